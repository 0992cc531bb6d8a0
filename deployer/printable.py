"""Text from hosts made safe to print: terminal control characters are shown as escapes
(`\\x1b`), never sent to the operator's terminal or a CI log. Must never change newlines or tabs,
and must never be applied to what the deployer itself draws (the live view's own codes).

A host's output, history records, lock owner and error text are the host's to choose: an escape
sequence in them could rewrite the screen, hide a line, retitle the terminal or, in some
terminals, answer back with input.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["one_line", "printable", "printable_event"]

E = TypeVar("E")

# C0 but tab and newline, DEL, C1, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character escaped; CRLF line ends become plain newlines."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text.replace("\r\n", "\n"))


def one_line(text: str) -> str:
    """`printable(text)` with its line breaks shown as `\\n` too: for a host's value shown
    inside a line of ours (a lock's owner, a process name), where a newline could fake a
    line of the report."""
    return printable(text).replace("\n", "\\n")


def _printable_value(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {
            printable(key) if isinstance(key, str) else key: _printable_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_printable_value(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return printable_event(value)
    return value


def printable_event(event: E) -> E:
    """An event (any dataclass) with every text in it made printable; the same object when
    nothing needed it. The terminal views call this before drawing anything."""
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        return event
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        if not f.init:
            continue
        value = getattr(event, f.name)
        cleaned = _printable_value(value)
        if cleaned != value:
            changes[f.name] = cleaned
    return dataclasses.replace(event, **changes) if changes else event
