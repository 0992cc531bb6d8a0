"""Feature flags as kept in version control, `flags/<env>.yml`, validated once into frozen
objects (errors name file, line and key path), and the JSON document hosts receive. Pure:
reads text, never a host.

    new-checkout:                      # letters, digits, '_' and '-'
      description: The new checkout    # required
      enabled: true                    # required
      percent: 30                      # optional, 0-100; absent means everyone
      allow: [alice, "42"]             # optional user ids, always on while enabled
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.config.yamlfile import Node, display_path, load_yaml, read_text
from deployer.errors import ConfigError

__all__ = [
    "FORMAT",
    "Flag",
    "FlagSet",
    "FlagState",
    "flags_path",
    "load_flags",
    "parse_flags",
    "parse_pushed",
]

FORMAT = 1  # version of the pushed JSON document
FLAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
KEYS = ("description", "enabled", "percent", "allow")


@dataclass(frozen=True)
class FlagState:
    """What decides a flag at runtime: what is pushed, and what `flags.list` compares."""

    enabled: bool
    percent: int = 100
    allow: tuple[str, ...] = ()

    def describe(self) -> str:
        text = "off" if not self.enabled else "on" if self.percent >= 100 else f"on {self.percent}%"
        if self.allow:
            text += f", allow {','.join(self.allow)}"
        return text

    def to_data(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "percent": self.percent, "allow": list(self.allow)}


@dataclass(frozen=True)
class Flag:
    name: str
    description: str
    enabled: bool
    percent: int | None = None  # None: not in the file (everyone, as 100)
    allow: tuple[str, ...] = ()
    line: int | None = field(default=None, compare=False)

    @property
    def state(self) -> FlagState:
        return FlagState(self.enabled, 100 if self.percent is None else self.percent, self.allow)

    def changed(
        self,
        *,
        on: bool = False,
        off: bool = False,
        percent: int | None = None,
        allow: Sequence[str] | None = None,
    ) -> Flag:
        """This flag after `flags.set`: `on` means everyone (a percentage in the file becomes
        100), `off` keeps percent and allow-list for later, `percent` also turns it on."""
        chosen = [what for what, given in (("--on", on), ("--off", off)) if given]
        if percent is not None:
            chosen.append("--percent")
        if len(chosen) > 1:
            raise ConfigError(f"{' and '.join(chosen)} cannot be combined: give one of them")
        if not chosen and allow is None:
            raise ConfigError(
                f"nothing to change for flag '{self.name}'",
                hint="give --on, --off, --percent N and/or --allow a,b",
            )
        flag = self
        if on:
            flag = replace(flag, enabled=True, percent=None if flag.percent is None else 100)
        elif off:
            flag = replace(flag, enabled=False)
        elif percent is not None:
            if not 0 <= percent <= 100:
                raise ConfigError(f"--percent must be from 0 to 100, got {percent}")
            flag = replace(flag, enabled=True, percent=percent)
        if allow is not None:
            flag = replace(flag, allow=_unique_ids(allow))
        return flag


def _unique_ids(ids: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in ids:
        user = raw.strip()
        if user and user not in out:
            out.append(user)
    return tuple(out)


@dataclass(frozen=True)
class FlagSet:
    """Every flag of one environment, in file order."""

    env: str
    file: str  # as shown in messages
    flags: tuple[Flag, ...] = ()

    def get(self, name: str) -> Flag:
        for flag in self.flags:
            if flag.name == name:
                return flag
        known = ", ".join(f.name for f in self.flags) or "none"
        raise ConfigError(
            f"no flag '{name}' in {self.file} (flags: {known})",
            hint=f"add it to {self.file} with a description and `enabled: false`, then try again",
        )

    def states(self) -> dict[str, FlagState]:
        return {flag.name: flag.state for flag in self.flags}

    def to_json(self) -> bytes:
        """The document pushed to `<deploy_to>/shared/flags.json` and read by `runtime.py`.
        Deterministic: the same flags always give the same bytes."""
        doc = {
            "format": FORMAT,
            "env": self.env,
            "flags": {name: state.to_data() for name, state in self.states().items()},
        }
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def flags_path(project_root: Path, env: str) -> Path:
    return project_root / "flags" / f"{env}.yml"


def load_flags(path: Path, env: str) -> FlagSet:
    shown = display_path(path)
    if not path.exists():
        raise ConfigError(
            "file not found",
            file=shown,
            hint=f"environment {env} keeps its feature flags in {shown} (see docs/flags.md)",
        )
    return parse_flags(read_text(path, shown), shown, env)


def parse_flags(text: str, file: str, env: str) -> FlagSet:
    root = Node.root(load_yaml(text, file), file)
    if root.is_null:  # an empty file: no flags yet
        return FlagSet(env, file)
    flags = []
    for name, node in root.mapping(hint="flags/<env>.yml maps flag names to flags").items():
        if not FLAG_NAME.fullmatch(name):
            raise node.error(
                "invalid flag name: use letters, digits, '_' and '-', starting with a letter or '_'"
            )
        fields = node.mapping(allowed=KEYS, required=("description", "enabled"))
        percent = fields["percent"].integer(0, 100) if "percent" in fields else None
        allow = _allow(fields["allow"]) if "allow" in fields else ()
        flags.append(
            Flag(
                name=name,
                description=fields["description"].text(),
                enabled=_boolean(fields["enabled"]),
                percent=percent,
                allow=allow,
                line=node.line,
            )
        )
    return FlagSet(env, file, tuple(flags))


def _boolean(node: Node) -> bool:
    value = node.boolean()
    if node.raw is not None and node.raw.lower() not in ("true", "false"):
        # YAML 1.1 also reads yes/no/on/off as booleans; a flag's state should not hinge on it.
        raise node.error(f"write true or false, not {node.raw!r}")
    return value


def _allow(node: Node) -> tuple[str, ...]:
    ids: list[str] = []
    for item in node.items(hint="a list of user ids, e.g. [alice, 42]"):
        value = item.value
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise item.expected("a user id (text or a whole number)")
        user = str(value).strip()
        if not user:
            raise item.error("must not be empty")
        if user in ids:
            raise item.error(f"user id {user!r} is listed twice")
        ids.append(user)
    return tuple(ids)


def parse_pushed(text: str) -> dict[str, FlagState]:
    """The flags in a host's `flags.json`, for comparing with the file. Raises ValueError when
    the document is not one `FlagSet.to_json` could have written."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("flags"), dict):
        raise ValueError("not a flags document (no 'flags' mapping)")
    out = {}
    flags: Mapping[str, Any] = data["flags"]
    for name, raw in flags.items():
        if not isinstance(raw, dict):
            raise ValueError(f"flag {name!r} is not a mapping")
        percent = raw.get("percent", 100)
        allow = raw.get("allow", [])
        if not isinstance(percent, int) or not isinstance(allow, list):
            raise ValueError(f"flag {name!r} has a malformed percent or allow-list")
        out[str(name)] = FlagState(raw.get("enabled") is True, percent, tuple(map(str, allow)))
    return out
