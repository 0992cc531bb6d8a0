"""The terminal views: which one a stream gets, the plain view free of escape sequences, and
the live view as a person would see it (its output replayed through a small screen model
that understands the few ANSI sequences it may use)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap

import pytest

from deployer.events import (
    BatchFinished,
    BatchStarted,
    CheckItem,
    Checklist,
    Event,
    HealthChecked,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    UploadProgress,
)
from deployer.reporters import LiveReporter, TerminalReporter, terminal_reporter
from deployer.reporters.live import live_capable
from deployer.secrets import Secret

REL = "20261127T170924Z-3de46d4"
CURSOR = re.compile(r"\x1b\[(\d*)([AJK])")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Screen:
    """Just enough of a terminal: cursor up (CSI n A), erase line (CSI 2K), erase below
    (CSI J), carriage return, newline; colours dropped. Anything else fails the test."""

    def __init__(self, text: str) -> None:
        self.lines: list[str] = [""]
        self.row = self.col = 0
        text = COLOUR.sub("", text)
        i = 0
        while i < len(text):
            if text.startswith("\x1b[", i):
                match = CURSOR.match(text, i)
                assert match, f"unexpected escape sequence at {text[i : i + 8]!r}"
                self._csi(int(match.group(1) or 1), match.group(2))
                i = match.end()
                continue
            char = text[i]
            if char == "\n":
                self.row, self.col = self.row + 1, 0
                if self.row == len(self.lines):
                    self.lines.append("")
            elif char == "\r":
                self.col = 0
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1
            i += 1

    def _csi(self, n: int, op: str) -> None:
        if op == "A":
            self.row = max(0, self.row - n)
        elif op == "K":
            assert n == 2, "only CSI 2K (the whole line) is used"
            self.lines[self.row] = ""
        else:  # J: erase from the cursor to the end of the screen
            del self.lines[self.row + 1 :]
            self.lines[self.row] = self.lines[self.row][: self.col]

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines).rstrip("\n")


def checklist() -> Checklist:
    return Checklist(
        items=(
            CheckItem("hosts", "every host reachable", "pass", True, "2 host(s): web1 web2"),
            CheckItem("notify", "notifications configured", "warn", False, "not set", "add it"),
        )
    )


def started(hosts: tuple[str, ...] = ("web1", "web2")) -> RunStarted:
    return RunStarted(
        run_id="r1", action="deploy", env="local", release=REL, hosts=hosts, batches=[hosts]
    )


def finished(ok: bool = True) -> RunFinished:
    return RunFinished(
        run_id="r1",
        action="deploy",
        ok=ok,
        duration=2.44,
        releases={"web1": REL, "web2": REL if ok else None},
    )


def a_deploy() -> list[Event]:
    """A deploy of two hosts with one batch, as the orchestrator emits it."""
    events: list[Event] = [started()]
    for host in ("web1", "web2"):
        events += [
            StepStarted(host=host, step="prepare"),
            StepFinished(host=host, step="prepare", ok=True, duration=0.05),
        ]
    events.append(checklist())
    for host in ("web1", "web2"):
        events += [
            StepStarted(host=host, step="stage"),
            UploadProgress(host=host, sent=2048, total=8192),
            UploadProgress(host=host, sent=8192, total=8192),
            StepFinished(host=host, step="stage", ok=True, duration=0.1),
        ]
    events.append(BatchStarted(index=1, total=1, hosts=["web1", "web2"]))
    for host in ("web1", "web2"):
        events += [
            StepStarted(host=host, step="switch"),
            StepFinished(host=host, step="switch", ok=True, duration=0.26),
            HealthChecked(host=host, ok=True, attempts=2, detail="HTTP/1.0 200 OK"),
        ]
    events += [
        BatchFinished(index=1, total=1, healthy=["web1", "web2"], failed=[], within_budget=True),
        finished(),
    ]
    return events


def live(events: list[Event], **options: object) -> tuple[LiveReporter, FakeTTY]:
    stream = FakeTTY()
    reporter = LiveReporter(stream, size=(100, 24), **options)  # type: ignore[arg-type]
    for event in events:
        reporter(event)
    return reporter, stream


def screen_after(events: list[Event], **options: object) -> str:
    return Screen(live(events, **options)[1].getvalue()).text


# ------------------------------------------------------------------ which view


@pytest.mark.parametrize(
    ("tty", "environ", "kind"),
    [
        (True, {"TERM": "xterm-256color"}, LiveReporter),
        (True, {"TERM": "xterm", "NO_COLOR": "1"}, LiveReporter),
        (True, {"TERM": "dumb"}, TerminalReporter),
        (True, {}, TerminalReporter),  # no TERM: nothing says cursor movement works
        (False, {"TERM": "xterm"}, TerminalReporter),  # a pipe, a CI log
    ],
)
def test_the_live_view_only_at_a_capable_terminal(
    tty: bool, environ: dict[str, str], kind: type
) -> None:
    stream = FakeTTY() if tty else io.StringIO()
    assert isinstance(terminal_reporter(stream, environ=environ), kind)


def test_a_closed_stream_is_not_a_terminal() -> None:
    class Closed(io.StringIO):
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    assert not live_capable(Closed(), {"TERM": "xterm"})


def test_no_color_keeps_the_live_view_without_colours() -> None:
    reporter = terminal_reporter(FakeTTY(), environ={"TERM": "xterm", "NO_COLOR": "1"})
    assert isinstance(reporter, LiveReporter) and not reporter.colour
    coloured = terminal_reporter(FakeTTY(), environ={"TERM": "xterm", "NO_COLOR": ""})
    assert isinstance(coloured, LiveReporter) and coloured.colour


# ------------------------------------------------------------------ the plain view


def test_the_plain_view_has_no_escape_sequences_and_a_line_per_event() -> None:
    stream = io.StringIO()
    reporter = terminal_reporter(stream, environ={"TERM": "xterm"})  # not a TTY
    for event in a_deploy():
        reporter(event)
    out = stream.getvalue()
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert lines[0] == f"deploy {REL} → local: 2 host(s), 1 batch(es) (run r1)"
    assert "  web1     prepare   ok 0.05s" in lines
    assert "  web2     upload    8.0 KB sent" in lines
    assert "  web1     health    healthy after 2 probe(s): HTTP/1.0 200 OK" in lines
    assert lines[-4:] == [
        "batch 1/1: healthy",
        "deploy finished in 2.4s",
        f"  web1     {REL}",
        f"  web2     {REL}",
    ]


def test_plain_lines_are_what_the_plain_view_writes() -> None:
    stream = io.StringIO()
    reporter, other = TerminalReporter(stream), TerminalReporter(io.StringIO())
    expected: list[str] = []
    for event in a_deploy():
        reporter(event)
        expected += other.lines(event)
    assert stream.getvalue() == "".join(text + "\n" for text in expected)


# ------------------------------------------------------------------ the live view


def test_live_rows_show_each_hosts_step_and_upload_bytes() -> None:
    events = a_deploy()
    upload = next(i for i, e in enumerate(events) if isinstance(e, UploadProgress))
    text = screen_after(events[: upload + 1], colour=False)
    assert text.splitlines()[-2:] == [
        "  web1     stage     uploading [###.........] 2.0 KB / 8.0 KB (25%)",
        "  web2     prepare   ok 0.05s",
    ]
    done = screen_after(events[: upload + 3], colour=False)
    assert done.splitlines()[-2] == "  web1     stage     ok 0.10s (8.0 KB sent)"


def test_live_view_keeps_header_checklist_and_batches_and_redraws_rows_in_place() -> None:
    events = a_deploy()
    health = next(i for i, e in enumerate(events) if isinstance(e, HealthChecked))
    text = screen_after(events[: health + 1], colour=False)
    assert text.splitlines() == [
        f"deploy {REL} → local: 2 host(s), 1 batch(es) (run r1)",
        "preflight checklist:",
        "  ok    hosts      every host reachable: 2 host(s): web1 web2",
        "  warn  notify     notifications configured: not set",
        "                   what to do: add it",
        "preflight: ok (1 warning(s), not blocking)",
        "batch 1/1: web1 web2",
        "  web1     health    healthy after 2 probe(s): HTTP/1.0 200 OK",
        "  web2     stage     ok 0.10s (8.0 KB sent)",
    ]


def test_live_view_ends_with_the_full_summary_and_no_rows() -> None:
    _, stream = live(a_deploy(), colour=False)
    assert Screen(stream.getvalue()).text.splitlines()[-5:] == [
        "batch 1/1: web1 web2",
        "batch 1/1: healthy",
        "deploy finished in 2.4s",
        f"  web1     {REL}",
        f"  web2     {REL}",
    ]
    assert "\x1b[" in stream.getvalue()  # it did draw in place on the way


def test_live_view_keeps_failures_and_their_output() -> None:
    events: list[Event] = [
        started(),
        StepStarted(host="web2", step="stage"),
        StepFinished(host="web2", step="stage", ok=False, duration=1.5, error="tar: boom\nexit 2"),
        HealthChecked(host="web1", ok=False, attempts=5, detail="no response"),
        Notice(level="error", text="web2: returning to the previous release"),
        finished(ok=False),
    ]
    lines = screen_after(events, colour=False).splitlines()
    assert lines[1:] == [
        "  web2     stage     FAILED 1.50s",
        "      tar: boom",
        "      exit 2",
        "  web1     health    UNHEALTHY after 5 probe(s): no response",
        "ERROR: web2: returning to the previous release",
        "deploy FAILED in 2.4s",
        f"  web1     {REL}",
        "  web2     (no release)",
    ]


def test_live_view_colours_marks_unless_told_not_to() -> None:
    _, coloured = live(a_deploy())
    out = coloured.getvalue()
    assert "\x1b[32mok\x1b[0m    hosts" in out and "\x1b[33mwarn\x1b[0m  notify" in out
    assert "\x1b[32mdeploy finished\x1b[0m in 2.4s" in out
    _, plain = live(a_deploy(), colour=False)
    assert not COLOUR.search(plain.getvalue())
    assert Screen(plain.getvalue()).text == Screen(out).text


def test_live_rows_fit_the_terminal_width() -> None:
    events: list[Event] = [
        started(),
        StepStarted(host="web1", step="stage"),
        UploadProgress(host="web1", sent=10, total=10_000_000),
        HealthChecked(host="web2", ok=True, attempts=1, detail="x" * 300),
    ]
    stream = FakeTTY()
    reporter = LiveReporter(stream, size=(40, 24))
    for event in events:
        reporter(event)
    rows = Screen(stream.getvalue()).text.splitlines()[1:]
    assert rows == [
        "  web1     stage     uploading [.......",
        "  web2     health    healthy after 1 pr",
    ]
    # Colour codes do not count: the visible text is what is cut.
    assert all(len(COLOUR.sub("", r)) <= 39 for r in rows)


def test_more_hosts_than_lines_shows_the_busy_ones_and_counts_the_rest() -> None:
    hosts = tuple(f"web{i}" for i in range(1, 31))
    events: list[Event] = [started(hosts)]
    events += [StepFinished(host=h, step="stage", ok=True, duration=0.1) for h in hosts[:20]]
    events += [StepStarted(host="web25", step="stage"), StepStarted(host="web30", step="stage")]
    stream = FakeTTY()
    reporter = LiveReporter(stream, size=(80, 8), colour=False)
    for event in events:
        reporter(event)
    rows = Screen(stream.getvalue()).text.splitlines()[1:]
    assert len(rows) == 6  # 8 lines, 2 kept free
    assert "  web25    stage     running" in rows and "  web30    stage     running" in rows
    assert rows[:3] == [
        "  web1     stage     ok 0.10s",
        "  web2     stage     ok 0.10s",
        "  web3     stage     ok 0.10s",
    ]
    assert rows[-1] == "  ... 25 more host(s): 17 ok, 8 waiting"


def test_outside_a_run_the_live_view_prints_plain_lines() -> None:
    """`invoke preflight` at a terminal: the checklist, coloured, and no cursor movement."""
    stream = FakeTTY()
    LiveReporter(stream, colour=False)(checklist())
    assert stream.getvalue() == "".join(
        text + "\n" for text in TerminalReporter(io.StringIO()).lines(checklist())
    )


def test_live_view_masks_secrets() -> None:
    Secret("pw-live-5b7e20")
    events: list[Event] = [
        started(),
        StepFinished(host="web1", step="stage", ok=False, duration=1, error="pw-live-5b7e20"),
        HealthChecked(host="web2", ok=True, attempts=1, detail="token pw-live-5b7e20"),
    ]
    out = live(events, colour=False)[1].getvalue()
    assert "pw-live-5b7e20" not in out and "token ***" in out


def test_paramiko_log_lines_do_not_reach_the_terminal() -> None:
    """Found running the quick start: with no logging configured, Python printed paramiko's
    "Secsh channel 1 open FAILED" on stderr beside the checklist's own report of it."""
    program = textwrap.dedent(
        """
        import logging
        from deployer.taskkit import handles_errors

        @handles_errors
        def task():
            logging.getLogger("paramiko.transport").error("Secsh channel 1 open FAILED")
            logging.getLogger("other").error("still shown")

        task()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Secsh" not in done.stderr and "still shown" in done.stderr


def test_a_terminal_without_a_size_gets_80x24_or_columns_and_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pty nobody sized reports 0x0 (as under `script` or some CI runners); rows cut to
    that width would show nothing."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        with open(follower, "w", closefd=False) as stream:
            monkeypatch.delenv("COLUMNS", raising=False)
            monkeypatch.delenv("LINES", raising=False)
            assert os.get_terminal_size(follower) == (0, 0)
            assert LiveReporter(stream)._terminal() == (80, 24)
            monkeypatch.setenv("COLUMNS", "132")
            monkeypatch.setenv("LINES", "50")
            assert LiveReporter(stream)._terminal() == (132, 50)
    finally:
        os.close(leader)
        os.close(follower)
