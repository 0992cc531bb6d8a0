"""Reporters subscribe to the orchestrator's events: a human terminal view, JSON lines for
machines, and a run record file left behind by every run."""

from deployer.reporters.jsonlines import JsonLinesReporter
from deployer.reporters.record import RunRecorder
from deployer.reporters.terminal import TerminalReporter

__all__ = ["JsonLinesReporter", "RunRecorder", "TerminalReporter"]
