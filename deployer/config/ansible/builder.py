"""One builder for every inventory source: groups and hosts declared in source order, then
each host's variables merged in Ansible's order. Also the checks every block of variables
gets, wherever it was written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deployer.config.model import Host, Inventory, Location
from deployer.config.untrusted import Unsafe, check_host_name
from deployer.config.yamlfile import describe
from deployer.errors import ConfigError

__all__ = ["Builder", "SourceSink", "VarsLayers", "Var", "checked_vars", "error"]

# Plain spellings accepted in a host's own entry. Not in group vars, where `port` is far more
# often the application's port than the SSH one.
HOST_ALIASES = {"host": "ansible_host", "port": "ansible_port", "user": "ansible_user"}
PATH_VARS = ("ansible_ssh_private_key_file", "ssh_key_file", "ssh_known_hosts_file")
GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PRIORITY = "ansible_group_priority"  # sets the group's priority; not a variable (as Ansible)

# A variable as written: (name, value, where it was written).
Var = tuple[str, Any, Location]


class VarsLayers(Protocol):
    """Variables from outside the inventory sources (group_vars/, host_vars/), by name."""

    def group(self, name: str) -> dict[str, Any]: ...

    def host(self, name: str) -> dict[str, Any]: ...


def checked_vars(entries: Iterable[Var], *, host_level: bool) -> dict[str, Any]:
    """Check one block of variables as written, and fill ansible_* from a host's plain
    host/port/user. Paths are resolved later, once variables are merged."""
    result: dict[str, Any] = {}
    for key, value, where in entries:
        if not key.isidentifier():
            raise error(where, "not a valid variable name", "use letters, digits and '_'")
        name = HOST_ALIASES.get(key, key) if host_level else key
        if name == "ansible_port":
            value = _port(value, where)
        elif name in ("ansible_host", "ansible_user") or key in PATH_VARS:
            if not isinstance(value, str) or not value.strip():
                raise error(where, f"expected a non-empty string, got {describe(value)}")
        elif key == _PRIORITY:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)  # Ansible takes int() of it
            if host_level or isinstance(value, bool) or not isinstance(value, int):
                raise error(where, f"expected an integer in group vars, got {describe(value)}")
        result[key] = value
    if host_level:
        for alias, name in HOST_ALIASES.items():
            if alias in result and name not in result:
                result[name] = result[alias]
    return result


def _port(value: Any, where: Location) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(where, f"expected an integer, got {describe(value)}")
    if not 1 <= value <= 65535:
        raise error(where, f"expected a port between 1 and 65535, got {value}")
    return value


def _resolve_path(value: str, root: Path) -> str:
    expanded = Path(value).expanduser()
    path = os.path.normpath(expanded if expanded.is_absolute() else root / expanded)
    return Unsafe(path) if isinstance(value, Unsafe) else path  # keep the mark


def error(where: Location, reason: str, hint: str | None = None) -> ConfigError:
    return ConfigError(
        reason, file=where.file, line=where.line, key_path=where.key_path or None, hint=hint
    )


@dataclass
class _Group:
    name: str
    where: Location
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # direct, in the order declared
    hosts: list[str] = field(default_factory=list)  # direct members, in the order declared
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1


@dataclass
class _HostEntry:
    name: str
    where: Location
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


class Builder:
    """Collects groups and hosts in source order from any format, then merges variables."""

    def __init__(self, file: str, root: Path) -> None:
        self.file = file
        self.root = root
        self.groups: dict[str, _Group] = {"all": _Group("all", Location(file, None, "all"))}
        self.hosts: dict[str, _HostEntry] = {}

    def add_group(self, name: str, parent: str | None, where: Location) -> None:
        if not GROUP_NAME.fullmatch(name):
            raise error(where, f"invalid group name {name!r}", "use letters, digits, '_', '-'")
        if name == "all" and parent is not None:
            raise error(where, "'all' contains every group and cannot be a child group")
        group = self.groups.setdefault(name, _Group(name, where))
        if parent is not None and parent not in group.parents:
            group.parents.append(parent)
            self.groups[parent].children.append(name)

    def add_group_vars(self, name: str, variables: dict[str, Any]) -> None:
        group = self.groups[name]
        if _PRIORITY in variables:
            group.priority = variables.pop(_PRIORITY)
        group.vars.update(variables)

    def add_host(
        self,
        group: str,
        name: str,
        variables: Mapping[str, Any],
        where: Location,
        port: int | None = None,
    ) -> None:
        check_host_name(name, where)
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = _HostEntry(name, where)
            if port is not None:  # Ansible takes `name:port` from the first declaration only
                host.vars["ansible_port"] = _port(port, where)
        if group not in host.groups:
            host.groups.append(group)
            self.groups[group].hosts.append(name)
        host.vars.update(variables)

    def inventory(self, env: str, layers: VarsLayers | None = None) -> Inventory:
        if not self.hosts:
            raise ConfigError(
                "no hosts defined",
                file=self.file,
                hint="add hosts under all: hosts: or under a group's hosts:",
            )
        for declared in list(self.groups.values()):
            if declared.name != "all" and not declared.parents:
                declared.parents.append("all")
                self.groups["all"].children.append(declared.name)
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
            ordered = sorted(member, key=order.__getitem__)
            hosts.append(self._host(entry, ordered, depth, layers))
        groups = {
            name: tuple(host.name for host in hosts if name in host.groups) for name in self.groups
        }
        return Inventory(
            env=env,
            path=self.file,
            hosts=tuple(hosts),
            groups=groups,
            children={name: tuple(g.children) for name, g in self.groups.items()},
            members={name: tuple(g.hosts) for name, g in self.groups.items()},
        )

    def _host(
        self,
        entry: _HostEntry,
        groups: list[str],
        depth: dict[str, int],
        layers: VarsLayers | None,
    ) -> Host:
        def precedence(name: str) -> tuple[int, int, str]:
            return depth[name], self.groups[name].priority, name

        # Ansible's order: the inventory's own group vars (all first), then group_vars/ files
        # in the same group order, then the host's inventory vars, then host_vars/.
        ranked = sorted(groups, key=precedence)
        merged: dict[str, Any] = {}
        for name in ranked:
            merged.update(self.groups[name].vars)
        if layers is not None:
            for name in ranked:
                merged.update(layers.group(name))
        merged.update(entry.vars)
        if layers is not None:
            merged.update(layers.host(entry.name))
        merged = {
            key: _resolve_path(value, self.root) if key in PATH_VARS else value
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
            raise error(self.groups[name].where, f"group cycle: {cycle}")
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


class SourceSink:
    """How sources.py declares into the builder. Its variables are checked like a file's, with
    Ansible's JSON semantics: no host/port/user shorthands in a host's variables."""

    def __init__(self, builder: Builder) -> None:
        self.builder = builder

    def group(self, name: str, parent: str | None, where: Location) -> None:
        self.builder.add_group(name, parent, where)

    def group_vars(self, name: str, entries: list[Var]) -> None:
        self.builder.add_group_vars(name, checked_vars(entries, host_level=False))

    def host(self, group: str, name: str, entries: list[Var], where: Location) -> None:
        self.builder.add_host(group, name, checked_vars(entries, host_level=False), where)
