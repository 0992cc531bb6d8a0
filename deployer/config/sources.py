"""Inventory sources that are not lists of hosts written by hand: a Terraform state file, the
output of `terraform output -json`, and an executable script printing Ansible's JSON inventory.

Each is read into the declarations inventory.py builds every inventory from (groups, group
variables, hosts with their variables and where each was found), so precedence, groups and
--limit behave as for YAML (a Terraform state's machines: terraform.py). This module never
connects to a host; the only thing it runs is the inventory script itself. Everything read
here but the companion `<env>.vars.yml` is marked Unsafe (config/untrusted.py): a cloud tag
or a script's output is data, never a template.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deployer.config.model import Location
from deployer.config.terraform import read_state
from deployer.config.untrusted import mark_unsafe
from deployer.config.yamlfile import Node, display_path, load_yaml, read_text
from deployer.errors import ConfigError
from deployer.localcmd import TimedOut, run_local
from deployer.localcmd import stderr_tail as _tail

__all__ = [
    "DEFAULT_OUTPUT",
    "SCRIPT_TIMEOUT",
    "SOURCE_SUFFIXES",
    "VARS_SUFFIX",
    "InventorySink",
    "is_source",
    "read_script",
    "read_source",
    "reject_companion",
]

TFSTATE = ".tfstate"
TFOUTPUT = ".tfoutput.json"
SCRIPT_SUFFIXES = (".py", ".sh")
SOURCE_SUFFIXES = (TFSTATE, TFOUTPUT, *SCRIPT_SUFFIXES)
VARS_SUFFIX = ".vars.yml"  # companion: `all` variables for a source that cannot hold them
DEFAULT_OUTPUT = "inventory"  # the `terraform output` read from <env>.tfoutput.json
SCRIPT_TIMEOUT = 30.0  # seconds; read at call time so tests can shorten it

# A variable as written: (name, value, where it was written).
Var = tuple[str, Any, Location]


class InventorySink(Protocol):
    """What a source declares, in source order. inventory.py checks the variables and builds."""

    def group(self, name: str, parent: str | None, where: Location) -> None: ...

    def group_vars(self, name: str, entries: list[Var]) -> None: ...

    def host(self, group: str, name: str, entries: list[Var], where: Location) -> None: ...


def is_source(path: Path, suffix: str) -> bool:
    """Whether the inventory file found for an environment is read here, not as YAML or INI.
    An extension-less file is a script when it is executable, INI otherwise."""
    return suffix in SOURCE_SUFFIXES or (suffix == "" and os.access(path, os.X_OK))


def reject_companion(inventories_dir: Path, env: str) -> None:
    """A `<env>.vars.yml` beside a YAML or INI inventory would be silently ignored: refuse it."""
    companion = inventories_dir / f"{env}{VARS_SUFFIX}"
    if companion.is_file():
        raise ConfigError(
            "only read beside a Terraform or script inventory source",
            file=display_path(companion),
            hint="move these variables into the inventory file's all: vars:",
        )


def read_source(path: Path, env: str, project_root: Path, sink: InventorySink) -> None:
    """Declare the groups and hosts of `path` (the source found for `env`) into `sink`, then
    the companion `<env>.vars.yml` variables as `all` variables."""
    settings = _read_settings(path.parent / f"{env}{VARS_SUFFIX}")
    file = display_path(path)
    if path.name.endswith(TFSTATE):
        settings.refuse("terraform_output", f"only used with {env}{TFOUTPUT}")
        read_state(
            _load_json(path, file), env, settings.address_attributes, sink, f"{env}{VARS_SUFFIX}"
        )
    elif path.name.endswith(TFOUTPUT):
        settings.refuse("terraform_address_attributes", f"only used with {env}{TFSTATE}")
        _read_output(_load_json(path, file), settings.output, sink)
    else:
        for key in ("terraform_output", "terraform_address_attributes"):
            settings.refuse(key, "only used with a Terraform inventory source")
        _read_script(path, file, project_root, sink)
    sink.group_vars("all", settings.vars)


# ---------------------------------------------------------------- companion variables


@dataclass(frozen=True)
class _Settings:
    vars: list[Var]
    nodes: dict[str, Node]  # the terraform_* keys as written, for error locations
    output: str = DEFAULT_OUTPUT
    address_attributes: tuple[str, ...] = ()  # empty: the per-type defaults

    def refuse(self, key: str, reason: str) -> None:
        if key in self.nodes:
            raise self.nodes[key].error(reason)


def _read_settings(path: Path) -> _Settings:
    if not path.is_file():
        return _Settings([], {})
    file = display_path(path)
    root = Node.root(load_yaml(read_text(path, file), file), file)
    if root.is_null:
        return _Settings([], {})
    entries = root.mapping(hint="write variables as a mapping, e.g. ansible_user: deploy")
    nodes = {key: entries.pop(key) for key in list(entries) if key.startswith("terraform_")}
    output = DEFAULT_OUTPUT
    attributes: tuple[str, ...] = ()
    for key, node in nodes.items():
        if key == "terraform_output":
            output = node.text()
        elif key == "terraform_address_attributes":
            attributes = tuple(item.text() for item in node.items())
            if not attributes:
                raise node.error("must list at least one attribute")
        else:
            raise node.error(
                "unknown setting (allowed: terraform_output, terraform_address_attributes)"
            )
    variables = [(key, node.plain(), node.location()) for key, node in entries.items()]
    return _Settings(variables, nodes, output, attributes)


# ---------------------------------------------------------------- terraform output -json


def _read_output(root: Node, output: str, sink: InventorySink) -> None:
    hint = "save it with: terraform output -json > inventories/<env>.tfoutput.json"
    outputs = root.mapping(hint=hint)
    if output not in outputs:
        names = ", ".join(outputs) or "none"
        raise root.error(
            f"no output named {output!r} (outputs: {names})",
            hint="add that output to the Terraform configuration, or name another with"
            f" terraform_output in the environment's {VARS_SUFFIX}",
        )
    value = outputs[output].mapping(required=("value",), hint=hint)["value"]
    _read_json_inventory(value, sink, host_vars=None)


# ---------------------------------------------------------------- JSON inventory shapes

_GROUP_KEYS = ("hosts", "vars", "children")
_LIST_KEYS = ("name", "address", "groups", "vars")
_SHAPES = (
    'Ansible\'s JSON inventory {"web": {"hosts": [...], "vars": {...}, "children": [...]},'
    ' "_meta": {"hostvars": {...}}}, or a list of {name, address, groups, vars}'
)


def _read_json_inventory(
    root: Node, sink: InventorySink, host_vars: Callable[[str], list[Var]] | None
) -> None:
    """Read either shape. `host_vars` is asked for a host's variables when Ansible's shape has
    no `_meta` (a script's `--host NAME`); None means it has none."""
    if isinstance(root.value, list):
        declared = _read_host_list(root, sink)
    else:
        declared = _read_ansible_groups(root, sink, host_vars)
    if not declared:
        raise root.error("lists no hosts")


def _read_ansible_groups(
    root: Node, sink: InventorySink, host_vars: Callable[[str], list[Var]] | None
) -> int:
    groups = root.mapping(hint=f"expected {_SHAPES}")
    meta = groups.pop("_meta", None)
    hostvars: dict[str, Node] | None = None
    if meta is not None and not meta.is_null:
        section = meta.mapping(allowed=("hostvars",)).get("hostvars")
        hostvars = {} if section is None or section.is_null else section.mapping()
    seen: dict[str, list[Var]] = {}

    def variables(host: str) -> list[Var]:
        # Hostvars of hosts in no group are ignored, as Ansible does.
        if host not in seen:
            if hostvars is not None:
                seen[host] = _vars(hostvars.get(host))
            else:
                seen[host] = host_vars(host) if host_vars is not None else []
        return seen[host]

    for name, node in groups.items():
        sink.group(name, None, node.location())
        if node.is_null:
            continue
        # Ansible also accepts a group written as a bare list of its hosts.
        parts = {"hosts": node} if isinstance(node.value, list) else node.mapping(_GROUP_KEYS)
        for child in _items(parts.get("hosts")):
            host = child.text()
            sink.host(name, host, variables(host), child.location())
        for child in _items(parts.get("children")):
            sink.group(child.text(), name, child.location())
        if "vars" in parts:
            sink.group_vars(name, _vars(parts["vars"]))
    return len(seen)


def _read_host_list(root: Node, sink: InventorySink) -> int:
    for item in root.items():
        parts = item.mapping(allowed=_LIST_KEYS, required=("name",))
        entries = _vars(parts.get("vars"))
        if "address" in parts:
            address = mark_unsafe(parts["address"].text())
            entries.append(("ansible_host", address, parts["address"].location()))
        groups = _items(parts.get("groups"))
        for child in groups:
            sink.group(child.text(), None, child.location())
        for group in [child.text() for child in groups] or ["all"]:
            sink.host(group, parts["name"].text(), entries, item.location())
    return len(root.value)


def _items(node: Node | None) -> list[Node]:
    return [] if node is None or node.is_null else node.items()


def _vars(node: Node | None) -> list[Var]:
    if node is None or node.is_null:
        return []
    hint = 'write variables as an object, e.g. {"ansible_user": "deploy"}'
    return [
        (key, mark_unsafe(child.plain()), child.location())
        for key, child in node.mapping(hint=hint).items()
    ]


# ---------------------------------------------------------------- inventory scripts


def read_script(path: Path, project_root: Path, sink: InventorySink) -> None:
    """Declare what an executable inventory script prints (one source of an inventory
    directory: no companion variables there, group_vars/ does that)."""
    _read_script(path, display_path(path), project_root, sink)


def _read_script(path: Path, file: str, project_root: Path, sink: InventorySink) -> None:
    if not os.access(path, os.X_OK):
        raise ConfigError(
            "inventory script is not executable",
            file=file,
            hint=f"chmod +x {file}",
        )

    def host_vars(host: str) -> list[Var]:
        label = f"{file} --host {host}"
        return _vars(_script_json(path, label, ["--host", host], project_root))

    _read_json_inventory(
        _script_json(path, f"{file} --list", ["--list"], project_root), sink, host_vars
    )


def _script_json(path: Path, label: str, args: list[str], project_root: Path) -> Node:
    """Run the script (no shell, cwd the project root) and parse what it prints."""
    try:
        process = run_local(
            [os.path.abspath(path), *args], cwd=project_root, timeout=SCRIPT_TIMEOUT
        )
    except TimedOut as exc:
        raise ConfigError(f"{exc}{_tail(exc.stderr)}", file=label) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot run: {exc.strerror}",
            file=label,
            hint="an executable inventory file is run: start it with a #! line, or chmod -x an"
            " INI file",
        ) from None
    err = process.stderr
    if process.returncode != 0:
        raise ConfigError(f"exited with code {process.returncode}{_tail(err)}", file=label)
    try:
        text = process.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"printed something that is not UTF-8 text{_tail(err)}", file=label
        ) from None
    return _parse_json(text, label, _tail(err))


# ---------------------------------------------------------------- JSON


def _load_json(path: Path, file: str) -> Node:
    return _parse_json(read_text(path, file), file)


def _parse_json(text: str, file: str, tail: str = "") -> Node:
    """JSON as a Node: errors name key paths, not lines (json keeps no positions)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON: {exc.msg} (column {exc.colno}){tail}", file=file, line=exc.lineno
        ) from None
    return Node(value, file)
