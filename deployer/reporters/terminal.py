"""A plain, line-oriented terminal view: readable in CI logs and pipes (no cursor tricks).
At a terminal, `deployer.reporters.live` draws a live view from the same lines."""

from __future__ import annotations

import threading
from typing import IO

from deployer.events import (
    BatchFinished,
    BatchStarted,
    CanaryAnalyzed,
    Checklist,
    Event,
    HealthChecked,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    UploadProgress,
    WatchChecked,
)
from deployer.printable import printable_event
from deployer.secrets import redact_event

_MARKS = {"pass": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip"}
_INDENT = " " * 19  # under the item's title


def _checklist(event: Checklist) -> list[str]:
    """One line per item (mark, name, what, first finding), further findings and what to do
    indented below, then the verdict."""
    out = ["preflight checklist:"]
    for item in event.items:
        lines = item.detail.splitlines() or [""]
        tags = []
        if item.status == "fail" and item.critical:
            tags.append("critical")
        if item.name in event.overridden:
            tags.append("overridden")
        elif item.name in event.blocking:
            tags.append("blocks the deploy")
        tag = f" [{', '.join(tags)}]" if tags else ""
        first = f": {lines[0]}" if lines[0] else ""
        mark = _MARKS.get(item.status, item.status)
        out.append(f"  {mark:<5} {item.name:<10} {item.title}{tag}{first}")
        out += [_INDENT + line for line in lines[1:]]
        if item.remedy:
            out.append(f"{_INDENT}what to do: {item.remedy}")
    warnings = sum(1 for i in event.items if i.status == "warn")
    if event.blocking:
        critical = {i.name for i in event.items if i.critical}
        names = [f"{n} (critical)" if n in critical else n for n in event.blocking]
        out.append(f"preflight: stopped by {', '.join(names)}")
    else:
        verdict = "preflight: ok"
        if event.overridden:
            verdict += f", overridden: {', '.join(event.overridden)}"
        if warnings:
            verdict += f" ({warnings} warning(s), not blocking)"
        out.append(verdict)
    return out


def _canary(event: CanaryAnalyzed) -> list[str]:
    """The bake's numbers side by side, each rule with its mark and limit, then the verdict."""
    base = event.baseline
    rows = [
        ("", "canary", "baseline", "", ""),
        ("hosts", str(len(event.canary.hosts)), str(len(base.hosts)) if base else "-", "", ""),
        (
            "requests" if event.source == "prometheus" else "samples",
            str(event.canary.samples),
            str(base.samples) if base else "-",
            "",
            "",
        ),
    ]
    for rule in event.rules:
        mark = {True: "ok", False: "FAIL", None: "skipped"}[rule.ok]
        rows.append((rule.name, rule.canary, rule.baseline, mark, rule.limit))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    source = "" if event.source == "probe" else f", {event.source}"
    out = [f"canary analysis, step {event.step}/{event.steps} ({event.bake:g}s bake{source}):"]
    out += [
        f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:<{w[3]}}  {r[4]}".rstrip()
        for r in rows
    ]
    out.append(f"  -> {'promote' if event.promote else 'roll back'}: {event.reason}")
    return out


def _watch(event: WatchChecked) -> list[str]:
    """One line per look; the last look (or a failing one) as a table like the canary's."""
    at = f"watch {event.elapsed:.0f}s/{event.duration:g}s"
    fleet, base = event.fleet, event.baseline
    if event.verdict == "error":
        return [f"{at}: {event.reason}"]
    p95 = "-" if fleet.p95_ms is None else f"{fleet.p95_ms:.0f} ms"
    errors = "-" if fleet.error_rate is None else f"{fleet.error_rate:.1f}%"
    line = (
        f"{at} (last {event.window:g}s): {fleet.samples} requests, errors {errors},"
        f" p95 {p95}: {event.verdict}"
    )
    if not event.final:
        return [line]
    rows = [
        ("", "fleet", "before", "", ""),
        ("hosts", str(len(fleet.hosts)), str(len(base.hosts)) if base else "-", "", ""),
        ("requests", str(fleet.samples), str(base.samples) if base else "-", "", ""),
    ]
    for rule in event.rules:
        mark = {True: "ok", False: "FAIL", None: "skipped"}[rule.ok]
        rows.append((rule.name, rule.canary, rule.baseline, mark, rule.limit))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    out = [line]
    out += [
        f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:<{w[3]}}  {r[4]}".rstrip()
        for r in rows
    ]
    out.append(f"  -> {'roll back' if event.verdict == 'failed' else 'keep'}: {event.reason}")
    return out


def one_line(text: str, width: int = 120) -> str:
    """A health body (an HTML page, a traceback) as one line: whitespace collapsed, cut to
    `width`. The whole body is in the run record and shown with -v."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class TerminalReporter:
    """One or more lines per event, written as they come. `lines` is also the live view's
    source for what stays in the scrollback (`deployer.reporters.live`)."""

    def __init__(self, stream: IO[str], *, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self._lock = threading.Lock()
        self.width = 8  # host name column, set from the run's hosts

    def _out(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        # Whoever emitted it, no secret gets out and no host's output drives the terminal.
        event = printable_event(redact_event(event))
        for text in self.lines(event):
            self._out(text)

    def lines(self, event: Event) -> list[str]:
        """What this view prints for one (already redacted) event: each item one write of
        one or more lines. Nothing for events it does not show."""
        w = self.width
        if isinstance(event, RunStarted):
            self.width = max([8, *(len(h) for h in event.hosts)])
            batches = f", {len(event.batches)} batch(es)" if event.batches else ""
            return [
                f"{event.action} {event.release or ''} → {event.env}: "
                f"{len(event.hosts)} host(s){batches} (run {event.run_id})"
            ]
        if isinstance(event, StepStarted):
            if self.verbose and event.command:
                body = "\n".join("      " + line for line in event.command.splitlines())
                return [f"  {event.host:<{w}} $ {event.step}:\n{body}"]
        elif isinstance(event, StepFinished):
            mark = "ok" if event.ok else "FAILED"
            line = f"  {event.host:<{w}} {event.step:<9} {mark} {event.duration:.2f}s"
            if not event.ok and event.error:
                line += "\n" + "\n".join("      " + x for x in event.error.splitlines())
            return [line]
        elif isinstance(event, UploadProgress):
            if event.sent == event.total:
                return [f"  {event.host:<{w}} upload    {_size(event.total)} sent"]
            if self.verbose:
                return [f"  {event.host:<{w}} upload    {_size(event.sent)} / {_size(event.total)}"]
        elif isinstance(event, BatchStarted):
            return [f"batch {event.index}/{event.total}: {' '.join(event.hosts)}"]
        elif isinstance(event, HealthChecked):
            mark = "healthy" if event.ok else "UNHEALTHY"
            detail = event.detail if self.verbose else one_line(event.detail)
            attempts = f"after {event.attempts} probe(s)"
            return [f"  {event.host:<{w}} health    {mark} {attempts}: {detail}"]
        elif isinstance(event, BatchFinished):
            if event.failed:
                verdict = "within the failure budget" if event.within_budget else "over budget"
                return [
                    f"batch {event.index}/{event.total}: {len(event.failed)} failed"
                    f" ({', '.join(event.failed)}), {verdict}"
                ]
            return [f"batch {event.index}/{event.total}: healthy"]
        elif isinstance(event, Checklist):
            return ["\n".join(_checklist(event))]
        elif isinstance(event, CanaryAnalyzed):
            return ["\n".join(_canary(event))]
        elif isinstance(event, Notice):
            return [f"{event.level.upper()}: {event.text}"]
        elif isinstance(event, WatchChecked):
            return _watch(event)
        elif isinstance(event, RunFinished):
            verdict = "finished" if event.ok else "FAILED"
            return [f"{event.action} {verdict} in {event.duration:.1f}s"] + [
                f"  {host:<{w}} {release or '(no release)'}"
                for host, release in event.releases.items()
            ]
        return []
