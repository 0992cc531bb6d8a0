"""The live terminal view, for a person at a terminal: what must stay in the scrollback
(header, checklist, batches, failures, notices, the final summary) is printed as the plain
view prints it, and below it one row per host (its current step, upload bytes, health) is
redrawn in place with three ANSI sequences only: cursor up, erase line, erase below.

Used only when the stream is a TTY and TERM is set and not "dumb" (`terminal_reporter`);
CI logs and pipes get `TerminalReporter`'s lines unchanged. Colour follows NO_COLOR. Anything
else written to the same terminal during a run (a stray warning on stderr) can leave a stale
copy of the block behind; the next redraw still starts from where the cursor is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from deployer.events import (
    Checklist,
    Event,
    HealthChecked,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Subscriber,
    UploadProgress,
)
from deployer.reporters.terminal import TerminalReporter, _size, one_line
from deployer.secrets import redact_event

__all__ = ["LiveReporter", "live_capable", "terminal_reporter"]

CSI = "\x1b["
_GREEN, _RED, _YELLOW, _DIM = "32", "31", "33", "2"
_MARK_COLOURS = {"ok": _GREEN, "FAIL": _RED, "warn": _YELLOW, "skip": _DIM}
_BAR = 12  # characters of the upload bar


def live_capable(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """A terminal that understands cursor movement: a TTY, with TERM set and not "dumb"."""
    environ = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False
    return tty and environ.get("TERM", "dumb") not in ("", "dumb")


def terminal_reporter(
    stream: IO[str], *, verbose: bool = False, environ: Mapping[str, str] | None = None
) -> Subscriber:
    """The live view at a terminal; the plain line-per-event view anywhere else."""
    environ = os.environ if environ is None else environ
    if live_capable(stream, environ):
        return LiveReporter(stream, verbose=verbose, colour=not environ.get("NO_COLOR"))
    return TerminalReporter(stream, verbose=verbose)


@dataclass
class _Row:
    """What one host is doing, as far as the events tell."""

    step: str = ""
    state: str = "waiting"  # waiting | running | ok | failed | healthy | unhealthy
    duration: float = 0.0
    sent: int = 0
    total: int = 0  # upload size; 0: no upload seen in this step
    detail: str = ""


class LiveReporter:
    def __init__(
        self,
        stream: IO[str],
        *,
        verbose: bool = False,
        colour: bool = True,
        size: tuple[int, int] | None = None,  # columns, lines; None: ask the terminal
    ) -> None:
        self.stream = stream
        self.colour = colour
        self._size = size
        self._plain = TerminalReporter(stream, verbose=verbose)
        self._rows: dict[str, _Row] = {}
        self._drawn = 0  # rows of the block on screen, just above the cursor
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ events

    def __call__(self, event: Event) -> None:
        event = redact_event(event)  # whoever emitted it, no secret gets out
        with self._lock:
            kept = self._update(event)
            self._write(kept)

    def _update(self, event: Event) -> list[str]:
        """Apply the event to the rows; returns the lines that stay in the scrollback."""
        lines = self._plain.lines(event)
        if isinstance(event, RunStarted):
            self._rows = {host: _Row() for host in event.hosts}
            return lines
        row = self._rows.get(getattr(event, "host", ""))
        if isinstance(event, StepStarted):
            if row is not None:
                self._rows[event.host] = _Row(step=event.step, state="running")
            return lines  # the script, with -v
        if isinstance(event, UploadProgress):
            if row is not None:
                row.sent, row.total = event.sent, event.total
            return []
        if isinstance(event, StepFinished):
            if row is not None:
                row.step, row.duration = event.step, event.duration
                row.state = "ok" if event.ok else "failed"
            return [] if event.ok else lines  # a failure, and why, stays
        if isinstance(event, HealthChecked):
            if row is not None:
                row.step, row.total = "health", 0
                row.state = "healthy" if event.ok else "unhealthy"
                row.detail = f"after {event.attempts} probe(s): {one_line(event.detail)}"
            return [] if event.ok else lines
        if isinstance(event, Checklist):
            return [self._paint_checklist(text) for text in lines]
        if isinstance(event, Notice):
            colour = {"warning": _YELLOW, "error": _RED}.get(event.level)
            return [self._paint(text, 0, len(event.level), colour) for text in lines]
        if isinstance(event, RunFinished):
            self._rows = {}  # the block goes; the summary says where every host is
            if lines:
                verdict = lines[0].split(" in ", 1)[0]
                lines[0] = self._paint(lines[0], 0, len(verdict), _GREEN if event.ok else _RED)
            return lines
        return lines  # batches started and finished stay as the plain view prints them

    # ------------------------------------------------------------------ drawing

    def _write(self, kept: list[str]) -> None:
        """Erase the block, print the lines that stay, draw the block again: one write."""
        block = self._block()
        body = [*(line for text in kept for line in text.split("\n")), *block]
        if not (self._drawn or block):  # outside a run (`invoke preflight`): plain lines
            out = [f"{line}\n" for line in body]
        else:
            out = [f"{CSI}{self._drawn}A\r"] if self._drawn else []  # to the block's top
            out += [f"{CSI}2K{line}\n" for line in body]
            out.append(f"{CSI}J")  # whatever the old block had below the new one
        if not out:
            return
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(block)

    def _terminal(self) -> tuple[int, int]:
        """Columns and lines: COLUMNS/LINES when set (as `shutil.get_terminal_size`), else
        what the terminal says, else 80x24. A pty nobody gave a size (`script`, some CI
        runners' TTYs) says 0x0, which would cut every row to nothing."""
        if self._size is not None:
            return self._size
        try:
            columns, lines = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, ValueError, OSError):
            columns = lines = 0
        return (
            _positive(os.environ.get("COLUMNS")) or columns or 80,
            _positive(os.environ.get("LINES")) or lines or 24,
        )

    def _block(self) -> list[str]:
        """One row per host, cut to the terminal's width (a wrapped line would throw the
        cursor-up count off) and, when there are more hosts than lines, the busiest first."""
        if not self._rows:
            return []
        columns, lines = self._terminal()
        room = max(2, lines - 2)
        names = list(self._rows)
        if len(names) > room:
            busy = [n for n in names if self._rows[n].state in ("running", "failed", "unhealthy")]
            shown = set((busy + [n for n in names if n not in busy])[: room - 1])
            rest = [n for n in names if n not in shown]
            names = [n for n in names if n in shown]
        else:
            rest = []
        out = [self._row(name, self._rows[name], columns) for name in names]
        if rest:
            states: dict[str, int] = {}
            for name in rest:
                states[self._rows[name].state] = states.get(self._rows[name].state, 0) + 1
            counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            out.append(f"  ... {len(rest)} more host(s): {counts}"[: columns - 1])
        return out

    def _row(self, name: str, row: _Row, columns: int) -> str:
        head = f"  {name:<{self._plain.width}} {row.step or '-':<9} "
        state, colour, tail = _state(row)
        line = (head + state + tail)[: max(1, columns - 1)]
        return self._paint(line, len(head), len(head) + len(state), colour)

    def _paint(self, text: str, start: int, end: int, colour: str | None) -> str:
        """`text` with [start, end) in colour (only the part that is there, after a cut)."""
        end = min(end, len(text))
        if not (self.colour and colour) or start >= end:
            return text
        return f"{text[:start]}{CSI}{colour}m{text[start:end]}{CSI}0m{text[end:]}"

    def _paint_checklist(self, text: str) -> str:
        lines = text.split("\n")
        for i, line in enumerate(lines):
            mark = line[2:7].strip()
            if line.startswith("  ") and mark in _MARK_COLOURS:
                lines[i] = self._paint(line, 2, 2 + len(mark), _MARK_COLOURS[mark])
        return "\n".join(lines)


def _state(row: _Row) -> tuple[str, str | None, str]:
    """The row's state word, its colour, and what follows it."""
    upload = row.total > 0
    if row.state == "running":
        if upload and row.sent < row.total:
            filled = round(_BAR * row.sent / row.total)
            bar = "#" * filled + "." * (_BAR - filled)
            return (
                "uploading",
                _YELLOW,
                f" [{bar}] {_size(row.sent)} / {_size(row.total)} ({100 * row.sent // row.total}%)",
            )
        sent = f" ({_size(row.total)} sent)" if upload else ""
        return "running", _YELLOW, sent
    if row.state in ("ok", "failed"):
        sent = f" ({_size(row.total)} sent)" if upload and row.state == "ok" else ""
        word = "ok" if row.state == "ok" else "FAILED"
        return word, _GREEN if row.state == "ok" else _RED, f" {row.duration:.2f}s{sent}"
    if row.state in ("healthy", "unhealthy"):
        word = "healthy" if row.state == "healthy" else "UNHEALTHY"
        return word, _GREEN if row.state == "healthy" else _RED, f" {row.detail}"
    return "waiting", _DIM, ""


def _positive(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0
