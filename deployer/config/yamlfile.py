"""YAML config files read with the line of every key and value, and a typed cursor over them.

Every accessor raises one ConfigError line (`file:line: key.path: reason`). This module knows
no schema; inventory.py and playbook.py say what is allowed where.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deployer.config.model import Location
from deployer.errors import ConfigError

__all__ = [
    "VAULT_HINT",
    "Node",
    "UnsafeText",
    "Vaulted",
    "YamlList",
    "YamlMap",
    "describe",
    "display_path",
    "load_yaml",
    "read_text",
    "refuse_vault_file",
]

VAULT_HINT = (
    "the deployer does not decrypt Ansible Vault: keep the value out of the inventory and give"
    " it to templates as a playbook secret, e.g. secrets: {NAME: {command: 'ansible-vault view"
    " FILE'}}"
)
_VAULT_HEADER = "$ANSIBLE_VAULT;"


class YamlMap(dict[str, Any]):
    """A mapping read from YAML. Keys are always the key's source text (`on:` stays "on")."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line  # 1-based line where the mapping starts
        self.key_lines: dict[str, int] = {}
        self.value_lines: dict[str, int] = {}
        self.raw: dict[str, str] = {}  # source text of scalar values: tells 0644 from 644
        self.duplicates: dict[str, tuple[int, int]] = {}  # key -> (first line, repeated line)


class YamlList(list[Any]):
    """A sequence read from YAML, remembering the line of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences remember where their parts started."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[YamlMap]:
    data = YamlMap(_line(node))
    yield data  # filled afterwards, so anchors and aliases to this mapping work
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            if key_node.value in seen:
                data.duplicates.setdefault(key_node.value, (seen[key_node.value], _line(key_node)))
            seen.setdefault(key_node.value, _line(key_node))
    loader.flatten_mapping(node)  # `<<: *defaults` merges come first, so explicit keys win
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain strings", key_node.start_mark
            )
        key = str(key_node.value)
        data[key] = loader.construct_object(value_node, deep=False)
        data.key_lines[key] = _line(key_node)
        data.value_lines[key] = _line(value_node)
        if isinstance(value_node, yaml.ScalarNode):
            data.raw[key] = str(value_node.value)
        else:
            data.raw.pop(key, None)


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> Iterator[YamlList]:
    data = YamlList(_line(node))
    yield data
    data.extend(loader.construct_object(child, deep=False) for child in node.value)
    data.item_lines = [_line(child) for child in node.value]


class Vaulted:
    """A `!vault` value: Ansible Vault ciphertext. Kept as a marker so that whoever reads it
    fails naming its key (`Node.plain`), never with an empty or encrypted string as value."""

    __slots__ = ()


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> Vaulted:
    return Vaulted()


class UnsafeText(str):
    """Text tagged `!unsafe`, as in Ansible: a variable's value that templating must never
    expand (render.py leaves it as written)."""

    __slots__ = ()


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> UnsafeText:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!unsafe applies to a single value here", node.start_mark
        )
    return UnsafeText(loader.construct_scalar(node))


_LineLoader.add_constructor("!vault", _construct_vault)
_LineLoader.add_constructor("!unsafe", _construct_unsafe)
_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document. Syntax errors become a ConfigError at the offending line."""
    loader = _LineLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [part for part in (exc.context, exc.problem) if part]
        reason = ", ".join(parts) or "unreadable"
        if mark is not None:
            reason = f"{reason} (column {mark.column + 1})"
        line = None if mark is None else mark.line + 1
        raise ConfigError(f"invalid YAML: {reason}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def display_path(path: Path) -> str:
    """How a config file is named in messages: relative to the working directory if inside it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return os.path.normpath(path)


def read_text(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=shown) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=shown) from None


def refuse_vault_file(text: str, shown: str) -> None:
    """A whole file encrypted with ansible-vault is an error naming it, never read as empty."""
    if text.lstrip().startswith(_VAULT_HEADER):
        raise ConfigError("file is encrypted with Ansible Vault", file=shown, hint=VAULT_HINT)


def describe(value: Any) -> str:
    """A value as shown after 'got' in an error message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Vaulted):
        return "a vault-encrypted value (!vault)"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class Node:
    """A value read from a config file, with where it came from. Accessors check its type."""

    value: Any
    file: str
    path: str = ""  # key path from the document root, e.g. strategy.serial[1]
    line: int | None = None
    raw: str | None = None  # source text, for scalars that sat in a mapping

    @classmethod
    def root(cls, value: Any, file: str) -> Node:
        return cls(value, file, "", getattr(value, "line", 1))

    @property
    def is_null(self) -> bool:
        return self.value is None

    def location(self) -> Location:
        return Location(self.file, self.line, self.path)

    def error(self, reason: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            reason, file=self.file, line=self.line, key_path=self.path or None, hint=hint
        )

    def expected(self, what: str, hint: str | None = None) -> ConfigError:
        scalar = self.raw is not None and not isinstance(self.value, str)
        if hint is None and scalar and what.startswith("a string"):
            hint = f'quote it to keep it as text: "{self.raw}"'
        return self.error(f"expected {what}, got {describe(self.value)}", hint)

    def _child(self, key: str) -> Node:
        data: YamlMap | dict[str, Any] = self.value
        value = data[key]
        line = None
        if isinstance(data, YamlMap):
            # Containers and empty values point at their key; scalars at themselves.
            scalar = value is not None and not isinstance(value, dict | list)
            line = data.value_lines[key] if scalar else data.key_lines[key]
        path = f"{self.path}.{key}" if self.path else key
        raw = data.raw.get(key) if isinstance(data, YamlMap) else None
        return Node(value, self.file, path, line if line is not None else self.line, raw)

    def mapping(
        self,
        allowed: Collection[str] | None = None,
        required: Collection[str] = (),
        hint: str | None = None,
    ) -> dict[str, Node]:
        """The entries of a mapping in file order; unknown keys and missing ones are errors."""
        if not isinstance(self.value, dict):
            raise self.expected("a mapping", hint)
        if isinstance(self.value, YamlMap) and self.value.duplicates:
            key, (first, again) = next(iter(self.value.duplicates.items()))
            path = f"{self.path}.{key}" if self.path else key
            raise ConfigError(
                f"duplicate key (first defined on line {first})",
                file=self.file,
                line=again,
                key_path=path,
            )
        children = {key: self._child(key) for key in self.value}
        if allowed is not None:
            for key, child in children.items():
                if key not in allowed:
                    close = difflib.get_close_matches(key, list(allowed), n=1)
                    raise child.error(
                        f"unknown key (allowed: {', '.join(allowed)})",
                        hint=f"did you mean '{close[0]}'?" if close else None,
                    )
        for key in required:
            if key not in children:
                raise self.error(f"missing required key '{key}'")
        return children

    def items(self, hint: str | None = None) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.expected("a list", hint)
        lines = self.value.item_lines if isinstance(self.value, YamlList) else []
        return [
            Node(item, self.file, f"{self.path}[{i}]", lines[i] if lines else self.line)
            for i, item in enumerate(self.value)
        ]

    def text(self, *, allow_empty: bool = False) -> str:
        if not isinstance(self.value, str):
            raise self.expected("a string")
        if not allow_empty and not self.value.strip():
            raise self.error("must not be empty")
        return self.value

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.expected("an integer")
        self._check_range(self.value, minimum, maximum)
        return self.value

    def number(
        self, minimum: float | None = None, maximum: float | None = None, *, positive: bool = False
    ) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.expected("a number")
        if positive and self.value <= 0:
            raise self.error(f"must be greater than 0, got {describe(self.value)}")
        self._check_range(self.value, minimum, maximum)
        return float(self.value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.expected("true or false")
        return self.value

    def choice(self, options: Collection[str]) -> str:
        if not isinstance(self.value, str) or self.value not in options:
            raise self.expected(f"one of: {', '.join(options)}")
        return self.value

    def plain(self) -> Any:
        """The value as plain dicts and lists (no line bookkeeping), duplicates rejected."""
        if isinstance(self.value, Vaulted):
            raise self.error("value is encrypted with Ansible Vault (!vault)", hint=VAULT_HINT)
        if isinstance(self.value, dict):
            return {key: child.plain() for key, child in self.mapping().items()}
        if isinstance(self.value, list):
            return [item.plain() for item in self.items()]
        return self.value

    def _check_range(self, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum:g}, got {describe(self.value)}")
        if maximum is not None and value > maximum:
            raise self.error(f"must be at most {maximum:g}, got {describe(self.value)}")
