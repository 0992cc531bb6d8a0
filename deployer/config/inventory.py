"""Ansible-style inventories (YAML or INI) read into frozen Hosts and groups, and --limit.

Parsing only: this module never resolves names or connects. Both formats, and the Terraform
and script sources of sources.py, feed one builder, so variable precedence and group
membership are computed the same way for each.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.config.model import Host, Inventory, Location
from deployer.config.sources import (
    SOURCE_SUFFIXES,
    VARS_SUFFIX,
    is_source,
    read_source,
    reject_companion,
)
from deployer.config.untrusted import Unsafe, check_host_name
from deployer.config.yamlfile import Node, describe, display_path, load_yaml, read_text
from deployer.errors import ConfigError

__all__ = [
    "available_environments",
    "load_inventory",
    "parse_inventory_ini",
    "parse_inventory_yaml",
    "select_hosts",
]

_YAML_SUFFIXES = (".yml", ".yaml")
_INI_SUFFIXES = (".ini", "")
_GROUP_KEYS = ("hosts", "vars", "children")
# Plain spellings accepted in a host's own entry. Not in group vars, where `port` is far more
# often the application's port than the SSH one.
_HOST_ALIASES = {"host": "ansible_host", "port": "ansible_port", "user": "ansible_user"}
_PATH_VARS = ("ansible_ssh_private_key_file", "ssh_key_file", "ssh_known_hosts_file")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_GLOB_CHARS = set("*?[")

# A variable as written: (name, value, where it was written).
_Var = tuple[str, Any, Location]


# ---------------------------------------------------------------- loading


def available_environments(inventories_dir: Path) -> tuple[str, ...]:
    """Environment names with an inventory file in the directory, sorted."""
    if not inventories_dir.is_dir():
        return ()
    suffixes = (*_YAML_SUFFIXES, ".ini", *SOURCE_SUFFIXES)
    names = set()
    for entry in inventories_dir.iterdir():
        if not entry.is_file() or entry.name.startswith(".") or entry.name.endswith(VARS_SUFFIX):
            continue
        suffix = next((s for s in suffixes if entry.name.endswith(s)), None)
        if suffix is not None:
            names.add(entry.name[: -len(suffix)])
        elif not entry.suffix:
            names.add(entry.name)
    return tuple(sorted(names))


def load_inventory(inventories_dir: Path, env: str) -> Inventory:
    """Read `<dir>/<env>.yml|.yaml|.ini` or `<dir>/<env>` (INI, or a script when executable),
    or a source of sources.py: `<env>.tfstate`, `<env>.tfoutput.json`, `<env>.py|.sh`. Paths
    in host variables resolve against the project root, the inventories directory's parent."""
    shown = display_path(inventories_dir)
    if not inventories_dir.is_dir():
        raise ConfigError(
            "inventory directory not found",
            file=shown,
            hint="create it with one inventory file per environment, e.g. staging.yml",
        )
    for extra in ("group_vars", "host_vars"):
        if (inventories_dir / extra).exists():
            raise ConfigError(
                f"{extra}/ directories are not supported",
                file=f"{shown}/{extra}",
                hint="move those variables into the inventory file's vars:",
            )
    found: list[tuple[str, Path]] = []
    if _ENV_NAME.fullmatch(env):
        suffixes = (*_YAML_SUFFIXES, *_INI_SUFFIXES, *SOURCE_SUFFIXES)
        found = [(s, inventories_dir / f"{env}{s}") for s in suffixes]
        found = [(s, path) for s, path in found if path.is_file()]
    if not found:
        envs = ", ".join(available_environments(inventories_dir)) or "none"
        raise ConfigError(
            f"no inventory for environment '{env}' (available: {envs})",
            file=shown,
            hint=f"run with --env one of: {envs}",
        )
    if len(found) > 1:
        names = ", ".join(path.name for _, path in found)
        raise ConfigError(
            f"environment '{env}' has several inventory files: {names}",
            file=shown,
            hint="keep only one of them",
        )
    suffix, path = found[0]
    file = display_path(path)
    root = Path(os.path.abspath(inventories_dir)).parent
    if is_source(path, suffix):
        builder = _Builder(file, root)
        read_source(path, env, root, _SourceSink(builder))
        return builder.inventory(env)
    reject_companion(inventories_dir, env)
    text = read_text(path, file)
    if path.suffix in _YAML_SUFFIXES:
        return parse_inventory_yaml(text, file, env, project_root=root)
    return parse_inventory_ini(text, file, env, project_root=root)


def parse_inventory_yaml(
    text: str, path: str, env: str, *, project_root: Path | None = None
) -> Inventory:
    """Parse Ansible's YAML inventory shape: `all:` with hosts, vars and children."""
    builder = _Builder(path, _default_root(path, project_root))
    root = Node.root(load_yaml(text, path), path)
    if not root.is_null:
        hint = "an inventory starts with 'all:' and its hosts:, vars: and children:"
        for name, node in root.mapping(hint=hint).items():
            if name in _GROUP_KEYS:
                raise node.error("must sit under a group at the top level", hint=hint)
            _yaml_group(builder, name, node, parent=None if name == "all" else "all")
    return builder.inventory(env)


def parse_inventory_ini(
    text: str, path: str, env: str, *, project_root: Path | None = None
) -> Inventory:
    """Parse Ansible's INI inventory: ungrouped hosts, [group], [group:vars], [group:children]."""
    builder = _Builder(path, _default_root(path, project_root))
    group, kind = "all", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue

        def where(key_path: str, number: int = number) -> Location:
            return Location(path, number, key_path)

        if line.startswith("["):
            group, kind = _ini_section(line, where(line))
            builder.add_group(group, None, where(group))
        elif kind == "hosts":
            name, variables = _ini_host(line, where)
            builder.add_host(group, name, variables, where(name))
        elif kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise _error(where(f"{group}:vars"), f"expected key=value, got {line!r}")
            key = key.strip()
            var = (key, _ini_value(value.strip()), where(f"{group}:vars.{key}"))
            builder.add_group_vars(group, _checked_vars([var], host_level=False))
        else:
            child = line.split("#", 1)[0].strip()
            if not _GROUP_NAME.fullmatch(child):
                raise _error(where(f"{group}:children"), f"expected a group name, got {line!r}")
            builder.add_group(child, group, where(f"{group}:children.{child}"))
    return builder.inventory(env)


def _default_root(path: str, project_root: Path | None) -> Path:
    if project_root is not None:
        return project_root
    return Path(os.path.abspath(path)).parent.parent


# ---------------------------------------------------------------- YAML


def _yaml_group(builder: _Builder, name: str, node: Node, parent: str | None) -> None:
    builder.add_group(name, parent, node.location())
    if node.is_null:
        return
    for key, section in node.mapping(allowed=_GROUP_KEYS).items():
        if section.is_null:
            continue
        if key == "vars":
            builder.add_group_vars(name, _yaml_vars(section, host_level=False))
        elif key == "hosts":
            hint = "write hosts as a mapping: each 'name:' followed by its variables or nothing"
            for host, entry in section.mapping(hint=hint).items():
                variables = {} if entry.is_null else _yaml_vars(entry, host_level=True)
                builder.add_host(name, host, variables, entry.location())
        else:
            for child, child_node in section.mapping().items():
                _yaml_group(builder, child, child_node, parent=name)


def _yaml_vars(node: Node, *, host_level: bool) -> dict[str, Any]:
    hint = "write variables as a mapping, e.g. {ansible_host: 10.0.0.5, ansible_port: 22}"
    entries = node.mapping(hint=hint).items()
    return _checked_vars(
        [(key, child.plain(), child.location()) for key, child in entries], host_level=host_level
    )


# ---------------------------------------------------------------- INI

_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?")


def _ini_section(line: str, where: Location) -> tuple[str, str]:
    match = _SECTION.fullmatch(line)
    if not match:
        raise _error(
            where, "malformed section header", "use [group], [group:vars] or [group:children]"
        )
    kind = match.group(2)
    if kind is None:
        return match.group(1), "hosts"
    if kind not in ("vars", "children"):
        raise _error(
            where,
            f"unknown section kind ':{kind}'",
            "use [group], [group:vars] or [group:children]",
        )
    return match.group(1), kind


def _ini_host(line: str, where: Callable[[str], Location]) -> tuple[str, dict[str, Any]]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise _error(where(line.split()[0]), f"cannot split host line: {exc}") from None
    if not tokens or not tokens[0]:
        raise _error(where(line), "expected a host name")
    name, variables = tokens[0], []
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise _error(where(name), f"expected key=value, got {token!r}")
        variables.append((key, _ini_value(value, quoted=False), where(f"{name}.{key}")))
    return name, _checked_vars(variables, host_level=True)


def _ini_value(text: str, *, quoted: bool = True) -> Any:
    """Ansible's loose INI typing: integers become ints, quotes are removed, the rest is text."""
    if quoted and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return text


# ---------------------------------------------------------------- variables


def _checked_vars(entries: Iterable[_Var], *, host_level: bool) -> dict[str, Any]:
    """Check one block of variables as written, and fill ansible_* from a host's plain
    host/port/user. Paths are resolved later, once variables are merged."""
    result: dict[str, Any] = {}
    for key, value, where in entries:
        if not key.isidentifier():
            raise _error(where, "not a valid variable name", "use letters, digits and '_'")
        name = _HOST_ALIASES.get(key, key) if host_level else key
        if name == "ansible_port":
            value = _port(value, where)
        elif name in ("ansible_host", "ansible_user") or key in _PATH_VARS:
            if not isinstance(value, str) or not value.strip():
                raise _error(where, f"expected a non-empty string, got {describe(value)}")
        elif key == "ansible_group_priority" and (
            host_level or isinstance(value, bool) or not isinstance(value, int)
        ):
            raise _error(where, f"expected an integer in group vars, got {describe(value)}")
        result[key] = value
    if host_level:
        for alias, name in _HOST_ALIASES.items():
            if alias in result and name not in result:
                result[name] = result[alias]
    return result


def _port(value: Any, where: Location) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(where, f"expected an integer, got {describe(value)}")
    if not 1 <= value <= 65535:
        raise _error(where, f"expected a port between 1 and 65535, got {value}")
    return value


def _resolve_path(value: str, root: Path) -> str:
    expanded = Path(value).expanduser()
    path = os.path.normpath(expanded if expanded.is_absolute() else root / expanded)
    return Unsafe(path) if isinstance(value, Unsafe) else path  # keep the mark


def _error(where: Location, reason: str, hint: str | None = None) -> ConfigError:
    return ConfigError(
        reason, file=where.file, line=where.line, key_path=where.key_path or None, hint=hint
    )


# ---------------------------------------------------------------- building


@dataclass
class _Group:
    name: str
    where: Location
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class _HostEntry:
    name: str
    where: Location
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


class _Builder:
    """Collects groups and hosts in file order from either format, then merges variables."""

    def __init__(self, file: str, root: Path) -> None:
        self.file = file
        self.root = root
        self.groups: dict[str, _Group] = {"all": _Group("all", Location(file, None, "all"))}
        self.hosts: dict[str, _HostEntry] = {}

    def add_group(self, name: str, parent: str | None, where: Location) -> None:
        if not _GROUP_NAME.fullmatch(name):
            raise _error(where, f"invalid group name {name!r}", "use letters, digits, '_', '-'")
        if name == "all" and parent is not None:
            raise _error(where, "'all' contains every group and cannot be a child group")
        group = self.groups.setdefault(name, _Group(name, where))
        if parent is not None and parent not in group.parents:
            group.parents.append(parent)

    def add_group_vars(self, name: str, variables: dict[str, Any]) -> None:
        self.groups[name].vars.update(variables)

    def add_host(self, group: str, name: str, variables: dict[str, Any], where: Location) -> None:
        check_host_name(name, where)
        host = self.hosts.setdefault(name, _HostEntry(name, where))
        if group not in host.groups:
            host.groups.append(group)
        host.vars.update(variables)

    def inventory(self, env: str) -> Inventory:
        if not self.hosts:
            raise ConfigError(
                "no hosts defined",
                file=self.file,
                hint="add hosts under all: hosts: or under a group's hosts:",
            )
        for declared in self.groups.values():
            if declared.name != "all" and not declared.parents:
                declared.parents.append("all")
        ancestors = {name: self._ancestors(name, ()) for name in self.groups}
        depth: dict[str, int] = {}
        for name in self.groups:
            self._depth(name, depth)
        order = {name: index for index, name in enumerate(self.groups)}
        hosts = []
        for entry in self.hosts.values():
            member = {"all"}
            for group in entry.groups:
                member |= {group} | ancestors[group]
            hosts.append(self._host(entry, sorted(member, key=order.__getitem__), depth))
        groups = {
            name: tuple(host.name for host in hosts if name in host.groups) for name in self.groups
        }
        return Inventory(env=env, path=self.file, hosts=tuple(hosts), groups=groups)

    def _host(self, entry: _HostEntry, groups: list[str], depth: dict[str, int]) -> Host:
        def precedence(name: str) -> tuple[int, int, str]:
            priority = self.groups[name].vars.get("ansible_group_priority", 1)
            return depth[name], priority, name

        merged: dict[str, Any] = {}
        for name in sorted(groups, key=precedence):
            merged.update(self.groups[name].vars)
        merged.update(entry.vars)
        merged = {
            key: _resolve_path(value, self.root) if key in _PATH_VARS else value
            for key, value in merged.items()
        }
        user = merged.get("ansible_user")
        return Host(
            name=entry.name,
            address=str(merged.get("ansible_host", entry.name)),
            port=int(merged["ansible_port"]) if "ansible_port" in merged else None,
            user=str(user) if user is not None else None,
            groups=tuple(groups),
            vars=merged,
            where=entry.where,
        )

    def _ancestors(self, name: str, path: tuple[str, ...]) -> set[str]:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise _error(self.groups[name].where, f"group cycle: {cycle}")
        found: set[str] = set()
        for parent in self.groups[name].parents:
            found |= {parent} | self._ancestors(parent, (*path, name))
        return found

    def _depth(self, name: str, depth: dict[str, int]) -> int:
        # Ansible's depth: the longest chain of parents up to 'all'. Cycles are already out.
        if name not in depth:
            parents = self.groups[name].parents
            depth[name] = 1 + max(self._depth(p, depth) for p in parents) if parents else 0
        return depth[name]


class _SourceSink:
    """How sources.py declares into the builder. Its variables are checked like a file's, with
    Ansible's JSON semantics: no host/port/user shorthands in a host's variables."""

    def __init__(self, builder: _Builder) -> None:
        self.builder = builder

    def group(self, name: str, parent: str | None, where: Location) -> None:
        self.builder.add_group(name, parent, where)

    def group_vars(self, name: str, entries: list[_Var]) -> None:
        self.builder.add_group_vars(name, _checked_vars(entries, host_level=False))

    def host(self, group: str, name: str, entries: list[_Var], where: Location) -> None:
        self.builder.add_host(group, name, _checked_vars(entries, host_level=False), where)


# ---------------------------------------------------------------- --limit


def select_hosts(inventory: Inventory, limit: str | None) -> tuple[Host, ...]:
    """Hosts matching an Ansible-like limit, in inventory order.

    Patterns are separated by ',' (or ':' when there is no ','); each is a host name, a group
    name or a glob over both. Plain patterns are united, then '&pattern' intersects and
    '!pattern' excludes. A pattern that matches nothing is an error, not a silent no-op.
    """
    if not inventory.hosts:
        raise ConfigError("no hosts defined", file=inventory.path)
    if limit is None or limit.strip() in ("", "all", "*"):
        return inventory.hosts
    host_names = {host.name for host in inventory.hosts}
    if "," in limit:
        patterns = limit.split(",")
    elif limit.strip() in host_names:  # an IPv6 host name holds ':'
        patterns = [limit]
    else:
        patterns = limit.split(":")
    patterns = [pattern.strip() for pattern in patterns if pattern.strip()]
    if not patterns:
        raise _limit_error(inventory, f"--limit '{limit}' holds no pattern")

    included: set[str] | None = None
    selected = set(host_names)
    excluded: set[str] = set()
    for pattern in patterns:
        if pattern[0] == "!":
            excluded |= _match(inventory, pattern[1:])
        elif pattern[0] == "&":
            selected &= _match(inventory, pattern[1:])
        else:
            included = (included or set()) | _match(inventory, pattern)
    if included is not None:
        selected &= included
    selected -= excluded
    hosts = tuple(host for host in inventory.hosts if host.name in selected)
    if not hosts:
        raise _limit_error(inventory, f"--limit '{limit}' selects no hosts")
    return hosts


def _match(inventory: Inventory, pattern: str) -> set[str]:
    """Host names matched by one pattern: a host, a group, or a glob over both."""
    if not pattern:
        raise _limit_error(inventory, "--limit holds an empty pattern after '!' or '&'")
    names = [host.name for host in inventory.hosts]
    if _GLOB_CHARS & set(pattern):
        hosts = {name for name in names if fnmatch.fnmatchcase(name, pattern)}
        groups = [name for name in inventory.groups if fnmatch.fnmatchcase(name, pattern)]
    else:
        hosts = {pattern} & set(names)
        groups = [pattern] if pattern in inventory.groups else []
    for group in groups:
        hosts.update(inventory.groups[group])
    if not hosts and not groups:
        raise _limit_error(inventory, f"--limit pattern '{pattern}' matches no host or group")
    return hosts


def _limit_error(inventory: Inventory, reason: str) -> ConfigError:
    return ConfigError(
        f"{reason} (groups: {', '.join(inventory.groups)})",
        file=inventory.path,
        hint="check --limit: host names, group names or globs like 'web*', separated by ','; "
        "'!pattern' excludes, '&pattern' intersects",
    )
