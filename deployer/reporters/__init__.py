"""Reporters subscribe to the orchestrator's events: a human terminal view (live at a
terminal, line per event elsewhere), JSON lines for machines, and a run record file left
behind by every run."""

from deployer.reporters.jsonlines import JsonLinesReporter
from deployer.reporters.live import LiveReporter, terminal_reporter
from deployer.reporters.record import RunRecorder
from deployer.reporters.terminal import TerminalReporter

__all__ = [
    "JsonLinesReporter",
    "LiveReporter",
    "RunRecorder",
    "TerminalReporter",
    "terminal_reporter",
]
