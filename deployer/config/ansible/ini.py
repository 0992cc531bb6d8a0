"""Ansible's INI inventory format, read into a Builder the way ansible-core's `ini` plugin
reads it: hosts before any section are in `all`, `[group]`, `[group:vars]`,
`[group:children]`, host ranges and `name:port`, and values typed by Python literal syntax.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

from deployer.config.ansible.builder import Builder, checked_vars, error
from deployer.config.ansible.ranges import expand_host_pattern
from deployer.config.model import Location

__all__ = ["ini_value", "read_ini"]

_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?")
_GROUP_LINE = re.compile(r"([^:\]\s]+)\s*(?:#.*)?")
_SECTION_HINT = "use [group], [group:vars] or [group:children], with no spaces"
# Groups every inventory has before any file declares them.
_BUILT_IN = ("all", "ungrouped")


@dataclass
class _Pending:
    """A group named before it is declared: by `[name:vars]`, or as a child."""

    kind: str  # "vars" or "children"
    where: Location
    parents: list[str] = field(default_factory=list)


def read_ini(text: str, path: str, builder: Builder) -> None:
    """Declare the groups, hosts and variables of one INI file into `builder`."""
    group, kind = "all", "hosts"
    pending: dict[str, _Pending] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue

        def where(key_path: str, number: int = number) -> Location:
            return Location(path, number, key_path)

        # As Ansible: a line that opens with '[' but does not end with ']' is a host pattern
        # (`[9:11].lab`), not a broken section header.
        if _SECTION.fullmatch(line) or (line.startswith("[") and line.endswith("]")):
            group, kind = _section(line, where(line))
            _declare(builder, group, kind, where(group), pending)
        elif kind == "hosts":
            _host_line(builder, group, line, where)
        elif kind == "vars":
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep or not key:
                raise error(where(f"{group}:vars"), f"expected key=value, got {line!r}")
            here = where(f"{group}:vars.{key}")
            var = (key, ini_value(value.strip(), here), here)
            builder.add_group_vars(group, checked_vars([var], host_level=False))
        else:
            match = _GROUP_LINE.fullmatch(line)
            if not match:
                raise error(where(f"{group}:children"), f"expected a group name, got {line!r}")
            child = match.group(1)
            here = where(f"{group}:children.{child}")
            if child in builder.groups or child in _BUILT_IN:
                builder.add_group(child, group, here)
            else:
                pending.setdefault(child, _Pending("children", here)).parents.append(group)
    for name, waiting in pending.items():
        if waiting.kind == "vars":
            raise error(
                waiting.where,
                f"[{name}:vars] sets variables of a group declared nowhere",
                f"declare it with a [{name}] or [{name}:children] section, as Ansible requires",
            )
        raise error(
            waiting.where,
            f"[{waiting.parents[-1]}:children] names group {name!r}, declared nowhere",
            f"declare it with a [{name}] or [{name}:children] section, as Ansible requires",
        )


def _section(line: str, where: Location) -> tuple[str, str]:
    match = _SECTION.fullmatch(line)
    if not match:
        raise error(where, "malformed section header", _SECTION_HINT)
    kind = match.group(2) or "hosts"
    if kind not in ("hosts", "vars", "children"):
        raise error(where, f"unknown section kind ':{kind}'", _SECTION_HINT)
    return match.group(1), kind


def _declare(
    builder: Builder, group: str, kind: str, where: Location, pending: dict[str, _Pending]
) -> None:
    """A section header. `[g]` and `[g:children]` declare g; `[g:vars]` alone does not, as in
    Ansible, where it must be declared somewhere in the same file (or an earlier source)."""
    known = group in builder.groups or group in _BUILT_IN
    if not known and kind == "vars" and group not in pending:
        pending[group] = _Pending("vars", where)
    builder.add_group(group, None, where)
    if kind != "vars" and group in pending:
        _resolve(builder, group, pending)


def _resolve(builder: Builder, group: str, pending: dict[str, _Pending]) -> None:
    waiting = pending.pop(group)
    for parent in waiting.parents:
        builder.add_group(group, parent, waiting.where)
        if parent in pending and pending[parent].kind == "children":
            _resolve(builder, parent, pending)


def _host_line(builder: Builder, group: str, line: str, where: Any) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise error(where(line.split()[0]), f"cannot split host line: {exc}") from None
    if not tokens or not tokens[0]:
        raise error(where(line), "expected a host name")
    pattern, variables = tokens[0], []
    try:
        names, port = expand_host_pattern(pattern)
    except ValueError as exc:
        raise error(where(pattern), str(exc)) from None
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise error(where(pattern), f"expected key=value, got {token!r}")
        here = where(f"{pattern}.{key}")
        variables.append((key, ini_value(value, here), here))
    checked = checked_vars(variables, host_level=True)
    for name in names:
        builder.add_host(group, name, checked, where(name), port)


def ini_value(text: str, where: Location) -> Any:
    """Ansible's INI typing: a Python literal becomes its value (`3`, `1.5`, `True`, `None`,
    `'quoted'`, `[1, 2]`, `{'a': 1}`), anything else stays the text as written (`yes`, `0644`,
    `hello world`). Tuples and sets become lists, as in Ansible."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    except Exception as exc:  # e.g. an unhashable dict key: Ansible fails on these too
        raise error(where, f"cannot read value {text!r}: {exc}") from None
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if value is Ellipsis or isinstance(value, complex):
        return "..." if value is Ellipsis else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value
