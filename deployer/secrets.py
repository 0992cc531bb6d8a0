"""Secrets: resolved on this machine at plan time, held in a type that prints as `***`, and
masked in everything the deployer shows. Must never put a value on a command line, in an
environment variable, in a repr or in output; values reach hosts only inside the stage
session's stdin (see `deployer.remote.scripts.stage`).

Every `Secret` ever created registers its value with a process-wide mask list, so output
redaction (`redact`, `redact_event`) cannot be forgotten by whoever wires a run together:
the same idea as a CI's `add-mask`.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from deployer.errors import ConfigError
from deployer.localcmd import TimedOut, run_local, stderr_tail

if TYPE_CHECKING:  # the config package imports this module (render.py): no cycle at runtime
    from deployer.config.model import SecretSource

__all__ = [
    "COMMAND_TIMEOUT",
    "MASK",
    "Secret",
    "mask",
    "redact",
    "redact_event",
    "resolve_secrets",
]

MASK = "***"
COMMAND_TIMEOUT = 30.0  # seconds per `command:` source; read at call time so tests can shorten it
MIN_SUBSTRING = 4  # shorter values are masked only where they are a whole line: "ab" is everywhere

E = TypeVar("E")


class Secret:
    """A secret value. Prints, formats and reprs as `***`; `.reveal()` is the only way out.

    Deliberately not a `str` subclass: slicing, `+`, `.upper()` or `json.dumps` would all hand
    back the plain value. Here they fail or show `***` instead.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _register(value)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self  # immutable; and dataclasses.asdict deep-copies field values

    def __reduce__(self) -> NoReturn:
        # A pickle is a file or a socket waiting to happen; nothing here needs one.
        raise TypeError("a Secret cannot be pickled")


# ---------------------------------------------------------------- resolving


def resolve_secrets(sources: Mapping[str, SecretSource], project_root: Path) -> dict[str, Secret]:
    """Every declared secret's value, read here (never on a host). A missing or empty value is
    a ConfigError at the secret's playbook line: an empty password is almost always a CI
    secret that was never mapped, not a real one."""
    return {name: _resolve(source, project_root) for name, source in sources.items()}


def _resolve(source: SecretSource, root: Path) -> Secret:
    if source.env is not None:
        value = os.environ.get(source.env)
        if not value:
            state = "is not set" if value is None else "is empty"
            raise _error(
                source,
                f"secret '{source.name}': environment variable {source.env} {state}",
                hint=f"export {source.env}, or in CI map it from the secret store"
                f" (GitHub Actions: env: {{{source.env}: ${{{{ secrets.{source.env} }}}}}})",
            )
        return Secret(value)
    assert source.command is not None
    return Secret(_run_command(source, root))


def _run_command(source: SecretSource, root: Path) -> str:
    """Run the source's command with bash in the project root. Its stdout is the value and is
    never shown, not even when the command fails; stderr's tail is, to say why."""
    assert source.command is not None
    what = f"secret '{source.name}': command"
    try:
        process = run_local(["bash", "-c", source.command], cwd=root, timeout=COMMAND_TIMEOUT)
    except TimedOut as exc:
        raise _error(source, f"{what} {exc}{_tail(exc.stderr)}") from None
    except OSError as exc:
        raise _error(source, f"{what} could not be started: {exc.strerror}") from None
    if process.returncode != 0:
        raise _error(source, f"{what} exited with code {process.returncode}{_tail(process.stderr)}")
    try:
        value = process.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(source, f"{what} printed something that is not UTF-8 text") from None
    value = value[:-1] if value.endswith("\n") else value  # `echo`'s newline is not the value
    if not value:
        raise _error(source, f"{what} printed nothing{_tail(process.stderr)}")
    return value


def _tail(stderr: bytes | None) -> str:
    return redact(stderr_tail(stderr))


def _error(source: SecretSource, message: str, hint: str | None = None) -> ConfigError:
    where = source.where
    if where is None:
        return ConfigError(message, hint=hint)
    return ConfigError(
        message, file=where.file, line=where.line, key_path=where.key_path or None, hint=hint
    )


# ---------------------------------------------------------------- masking

_masks_lock = threading.Lock()
ANCHOR = 8  # how many first characters of a value are looked for before the value itself
# The values to mask, longest first (so a value containing another is masked whole); their
# first characters (of the values masked as substrings) -> their places among them; last, the
# values too short to mask as substrings. Secrets that share their first characters (presigned
# URLs of one bucket) cost one search of a text per beginning, not one per value. One tuple,
# replaced whole on every change, so that a reader never pairs one table's places with
# another's values.
_table: tuple[tuple[str, ...], dict[str, tuple[int, ...]], tuple[str, ...]] = ((), {}, ())
# redact_event's last call: (event, table it was redacted with, result). A bus hands the same
# event to every reporter in turn, and each redacts it: the second and later calls return
# this. One tuple, replaced whole, so that threads emitting at once never see a mixed entry;
# holding the event keeps its id from being reused by another.
_last_event: tuple[object, object, object] = (None, None, None)


def _register(value: str) -> None:
    global _table
    # A multi-line value (a key file) is also masked line by line, since an output tail may
    # hold only part of it; but not its short lines (a lone "}" is no secret).
    lines = (line.strip() for line in value.splitlines()) if "\n" in value else ()
    parts = {value, *(line for line in lines if len(line) >= MIN_SUBSTRING)}
    with _masks_lock:
        known = set(_table[0])
        new = {part for part in parts if part and part not in known}
        if new:
            masks = tuple(sorted(known | new, key=len, reverse=True))
            anchors: dict[str, list[int]] = {}
            for index, part in enumerate(masks):
                if len(part) >= MIN_SUBSTRING:
                    anchors.setdefault(part[:ANCHOR], []).append(index)
            short = tuple(part for part in masks if len(part) < MIN_SUBSTRING)
            _table = (masks, {a: tuple(places) for a, places in anchors.items()}, short)


def mask(value: str) -> None:
    """Mask `value` in all output from now on, though it is not a Secret: a value the deployer
    must hold as plain text, such as the webhook URL (it carries the chat service's token)."""
    _register(value)


def redact(text: str) -> str:
    """`text` with every secret value this process has resolved replaced by `***`."""
    masks, anchors, short = _table
    if not masks or not text:
        return text
    # A value can only be in the text if its beginning is; masking one never makes another's
    # beginning appear (unless that holds a `*`). The values are masked in their order.
    found = [i for a, places in anchors.items() if "*" in a or a in text for i in places]
    for index in sorted(found):
        text = text.replace(masks[index], MASK)
    if short:
        text = "\n".join(MASK if line.strip() in short else line for line in text.split("\n"))
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(item) for item in value)
    return value


def redact_event(event: E) -> E:
    """An event (any dataclass) with every text in it redacted; the same object when nothing
    needed masking. Reporters call this first, so no event reaches a screen, a file or a
    webhook with a secret in it, whoever emitted it. Asked again for the same event with no
    secret registered since (the next reporter on the bus), it returns the same answer
    without looking again: events are frozen once emitted."""
    global _last_event
    table = _table
    if not table[0] or not dataclasses.is_dataclass(event) or isinstance(event, type):
        return event
    last, last_table, last_result = _last_event
    if last is event and last_table is table:
        return cast(E, last_result)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        cleaned = _redact_value(value)
        if cleaned != value:
            changes[f.name] = cleaned
    # Events have no init=False fields; replace() keeps `at` and the rest as they were.
    result = dataclasses.replace(event, **changes) if changes else event
    _last_event = (event, table, result)
    return result
