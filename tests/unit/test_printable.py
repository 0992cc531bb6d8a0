"""Issue 14, section 3: a host's output never drives the operator's terminal. Control
characters in what hosts report are shown as escapes in the plain and live views and in error
messages; the views' own codes are untouched."""

from __future__ import annotations

import io
import re
import signal

import pytest
from invoke.exceptions import Exit

from deployer.errors import DeployerError
from deployer.events import CheckItem, Checklist, Notice, RunStarted, StepFinished
from deployer.printable import printable, printable_event
from deployer.reporters import LiveReporter, TerminalReporter
from deployer.taskkit import handles_errors

# Clear the screen, retitle the window (OSC ... BEL), hide text (CR overwrite), C1 CSI, RLO.
HOSTILE = "ok\x1b[2J\x1b]0;pwned\x07\rfake line\x9b31m\u202eevil\x00"
SHOWN = "ok\\x1b[2J\\x1b]0;pwned\\x07\\x0dfake line\\x9b31m\\u202eevil\\x00"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_control_characters_are_escaped_newlines_and_tabs_kept() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("a\tb\nc\r\nd") == "a\tb\nc\nd"  # CRLF line ends are plain newlines
    assert printable("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


def test_events_are_cleaned_in_every_nested_text() -> None:
    item = CheckItem("hosts", "reachable", "fail", True, detail="web1: " + HOSTILE)
    event = Checklist(items=[item], blocking=["hosts"])
    cleaned = printable_event(event)
    assert cleaned.items[0].detail == "web1: " + SHOWN
    plain = Notice(level="info", text="nothing odd")
    assert printable_event(plain) is plain


def failed_step() -> StepFinished:
    return StepFinished(
        host="web1", step="switch", ok=False, duration=0.1, error="restart said: " + HOSTILE
    )


def test_the_plain_view_prints_host_output_without_control_characters() -> None:
    stream = io.StringIO()
    reporter = TerminalReporter(stream)
    reporter(RunStarted(action="deploy", env="test", release="r", hosts=["web1"], run_id="x"))
    reporter(failed_step())
    out = stream.getvalue()
    assert CONTROL.search(out.replace("\n", "")) is None
    assert "restart said: " + SHOWN in out


def test_the_live_view_escapes_host_output_but_keeps_its_own_codes() -> None:
    stream = io.StringIO()
    reporter = LiveReporter(stream, size=(200, 24))
    reporter(RunStarted(action="deploy", env="test", release="r", hosts=["web1"], run_id="x"))
    reporter(failed_step())
    out = stream.getvalue()
    assert "restart said: " + SHOWN in out
    own = re.sub(r"\x1b\[[0-9;]*[ABJKm]", "", out)  # the view's cursor and colour codes
    assert CONTROL.search(own.replace("\n", "").replace("\r", "")) is None


def test_error_messages_are_printed_without_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @handles_errors
    def task() -> None:
        raise DeployerError("web1: step 'migrate' failed: " + HOSTILE)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(Exit):
            task()
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x9b" not in err and "\x07" not in err
    assert SHOWN in err
