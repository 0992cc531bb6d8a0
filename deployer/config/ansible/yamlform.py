"""Ansible's YAML inventory format (`all:` with hosts, vars and children), read into a Builder
the way ansible-core's `yaml` plugin reads it, host ranges and `name:port` included.
"""

from __future__ import annotations

from typing import Any

from deployer.config.ansible.builder import Builder, checked_vars, error
from deployer.config.ansible.ranges import expand_host_pattern
from deployer.config.yamlfile import Node, load_yaml

__all__ = ["read_yaml"]

_GROUP_KEYS = ("hosts", "vars", "children")
_TOP_HINT = "an inventory starts with 'all:' and its hosts:, vars: and children:"
_HOSTS_HINT = "write hosts as a mapping: each 'name:' followed by its variables or nothing"


def read_yaml(text: str, path: str, builder: Builder) -> None:
    """Declare the groups, hosts and variables of one YAML (or JSON) file into `builder`."""
    root = Node.root(load_yaml(text, path), path)
    if root.is_null:
        return
    for name, node in root.mapping(hint=_TOP_HINT).items():
        if name in _GROUP_KEYS:
            raise node.error("must sit under a group at the top level", hint=_TOP_HINT)
        # A top-level group is under `all` only if nothing else claims it, as in Ansible
        # (the builder adds parentless groups to `all` once every source is read).
        _group(builder, name, node, parent=None)


def _group(builder: Builder, name: str, node: Node, parent: str | None) -> None:
    builder.add_group(name, parent, node.location())
    if node.is_null:
        return
    for key, section in node.mapping(allowed=_GROUP_KEYS).items():
        if section.is_null:
            continue
        if key == "vars":
            builder.add_group_vars(name, _vars(section, host_level=False))
        elif key == "hosts":
            for pattern, entry in _entries(section, _HOSTS_HINT):
                variables = {} if entry is None or entry.is_null else _vars(entry, True)
                where = (entry or section).location()
                try:
                    hosts, port = expand_host_pattern(pattern)
                except ValueError as exc:
                    raise error(where, str(exc)) from None
                for host in hosts:
                    builder.add_host(name, host, variables, where, port)
        else:
            for child, child_node in _entries(section, None):
                if child_node is None:
                    builder.add_group(child, name, section.location())
                else:
                    _group(builder, child, child_node, parent=name)


def _entries(section: Node, hint: str | None) -> list[tuple[str, Node | None]]:
    """A mapping's entries; a single name written as text stands for `{name: }`, as Ansible
    reads it."""
    if isinstance(section.value, str):
        return [(section.value, None)]
    return list(section.mapping(hint=hint).items())


def _vars(node: Node, host_level: bool) -> dict[str, Any]:
    hint = "write variables as a mapping, e.g. {ansible_host: 10.0.0.5, ansible_port: 22}"
    entries = node.mapping(hint=hint).items()
    return checked_vars(
        [(key, child.plain(), child.location()) for key, child in entries], host_level=host_level
    )
