"""A plain, line-oriented terminal view: readable in CI logs (no cursor tricks)."""

from __future__ import annotations

import threading
from typing import IO

from deployer.events import (
    BatchFinished,
    BatchStarted,
    Event,
    HealthChecked,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    UploadProgress,
)
from deployer.secrets import redact_event


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class TerminalReporter:
    def __init__(self, stream: IO[str], *, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self._lock = threading.Lock()
        self._width = 8

    def _out(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        event = redact_event(event)  # whoever emitted it, no secret gets out
        if isinstance(event, RunStarted):
            self._width = max([8, *(len(h) for h in event.hosts)])
            batches = f", {len(event.batches)} batch(es)" if event.batches else ""
            self._out(
                f"{event.action} {event.release or ''} → {event.env}: "
                f"{len(event.hosts)} host(s){batches} (run {event.run_id})"
            )
        elif isinstance(event, StepStarted):
            if self.verbose and event.command:
                body = "\n".join("      " + line for line in event.command.splitlines())
                self._out(f"  {event.host:<{self._width}} $ {event.step}:\n{body}")
        elif isinstance(event, StepFinished):
            mark = "ok" if event.ok else "FAILED"
            line = f"  {event.host:<{self._width}} {event.step:<9} {mark} {event.duration:.2f}s"
            if not event.ok and event.error:
                line += "\n" + "\n".join("      " + x for x in event.error.splitlines())
            self._out(line)
        elif isinstance(event, UploadProgress):
            if event.sent == event.total:
                self._out(f"  {event.host:<{self._width}} upload    {_size(event.total)} sent")
            elif self.verbose:
                self._out(
                    f"  {event.host:<{self._width}} upload    "
                    f"{_size(event.sent)} / {_size(event.total)}"
                )
        elif isinstance(event, BatchStarted):
            self._out(f"batch {event.index}/{event.total}: {' '.join(event.hosts)}")
        elif isinstance(event, HealthChecked):
            mark = "healthy" if event.ok else "UNHEALTHY"
            self._out(
                f"  {event.host:<{self._width}} health    {mark} after {event.attempts}"
                f" probe(s): {event.detail[:160]}"
            )
        elif isinstance(event, BatchFinished):
            if event.failed:
                verdict = "within the failure budget" if event.within_budget else "over budget"
                self._out(
                    f"batch {event.index}/{event.total}: {len(event.failed)} failed"
                    f" ({', '.join(event.failed)}), {verdict}"
                )
            else:
                self._out(f"batch {event.index}/{event.total}: healthy")
        elif isinstance(event, Notice):
            self._out(f"{event.level.upper()}: {event.text}")
        elif isinstance(event, RunFinished):
            verdict = "finished" if event.ok else "FAILED"
            self._out(f"{event.action} {verdict} in {event.duration:.1f}s")
            for host, release in event.releases.items():
                self._out(f"  {host:<{self._width}} {release or '(no release)'}")
