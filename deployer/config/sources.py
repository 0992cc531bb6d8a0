"""Inventory sources that are not lists of hosts written by hand: a Terraform state file, the
output of `terraform output -json`, and an executable script printing Ansible's JSON inventory.

Each is read into the declarations inventory.py builds every inventory from (groups, group
variables, hosts with their variables and where each was found), so precedence, groups and
--limit behave as for YAML. This module never connects to a host; the only thing it runs is the
inventory script itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deployer.config.model import Location
from deployer.config.yamlfile import Node, display_path, load_yaml, read_text
from deployer.errors import ConfigError

__all__ = [
    "DEFAULT_OUTPUT",
    "SCRIPT_TIMEOUT",
    "SOURCE_SUFFIXES",
    "VARS_SUFFIX",
    "InventorySink",
    "is_source",
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
STDERR_TAIL_LINES = 10

# Address attributes per resource type, first present wins. Dotted paths step into nested
# blocks (`network_interface.0.access_config.0.nat_ip`), as Terraform's own flatmap did.
_ADDRESS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "aws_instance": ("public_ip", "private_ip"),
    "google_compute_instance": (
        "network_interface.0.access_config.0.nat_ip",
        "network_interface.0.network_ip",
    ),
    "azurerm_linux_virtual_machine": ("public_ip_address", "private_ip_address"),
    "digitalocean_droplet": ("ipv4_address", "ipv4_address_private"),
    "hcloud_server": ("ipv4_address", "ipv6_address"),
}
_GENERIC_ADDRESS_ATTRIBUTES = ("ipv4_address", "public_ip", "private_ip")
# Resources that carry an address but are not machines: the generic fallback skips them, so an
# elastic IP or a NAT gateway never becomes a deploy target.
_NOT_A_MACHINE = re.compile(
    r"(_eips?|_ips?|_address(es)?|nat_gateway|network_interface|floating_ip|_lb|load_balancer)"
    r"(_|$)"
)
_TAG_ATTRIBUTES = ("labels", "tags_all", "tags")  # later wins; GCP and Hetzner call them labels

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
        _read_state(_load_json(path, file), env, settings.address_attributes, sink)
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
    output, attributes = DEFAULT_OUTPUT, ()
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


# ---------------------------------------------------------------- Terraform state


@dataclass(frozen=True)
class _Instance:
    resource: str  # Terraform address, e.g. module.app.aws_instance.web[0]
    node: Node  # the instance object in the state
    attributes: Node
    address: Node | None  # first present address attribute
    tags: dict[str, Node]  # lower-cased tag key -> value


def _read_state(root: Node, env: str, attributes: tuple[str, ...], sink: InventorySink) -> None:
    top = root.mapping(hint="a Terraform state file is a JSON object with version and resources")
    version = top.get("version", root)
    if version.value != 4:
        raise version.error(
            f"unsupported Terraform state version {version.value!r} (expected 4)",
            hint="read by Terraform 0.12 or later; or export `terraform output -json` instead",
        )
    found = list(_instances(top.get("resources"), attributes))
    if not found:
        known = ", ".join(_ADDRESS_ATTRIBUTES)
        raise root.error(
            f"no machine found among the resources (known types: {known}, or any resource"
            f" with one of: {', '.join(attributes or _GENERIC_ADDRESS_ATTRIBUTES)})"
        )
    tagged = {_tag(i, "environment") for i in found} - {None}
    if tagged:
        found = [i for i in found if _tag(i, "environment") == env]
        if not found:
            raise root.error(
                f"no instance is tagged Environment={env} (tagged: {', '.join(sorted(tagged))})",  # type: ignore[arg-type]
                hint="instances are filtered by their Environment tag as soon as any has one",
            )
    names: dict[str, str] = {}
    for instance in found:
        name, name_node = _host_name(instance)
        if name in names:
            raise name_node.error(
                f"host name {name!r} is also {names[name]}'s",
                hint="give each instance its own Name tag (or name attribute)",
            )
        names[name] = instance.resource
        if instance.address is None:
            tried = attributes or _ADDRESS_ATTRIBUTES[instance.resource_type]
            raise instance.attributes.error(
                f"{instance.resource} has none of the address attributes {', '.join(tried)}",
                hint="set terraform_address_attributes in the environment's .vars.yml",
            )
        address = instance.address
        entries: list[Var] = [
            ("ansible_host", address.value, address.location()),
            ("terraform_resource", instance.resource, instance.node.location()),
            ("terraform_tags", {k: n.value for k, n in _raw_tags(instance)}, instance.node.location()),
        ]
        role = instance.tags.get("role")
        roles = [r.strip() for r in str(role.value).split(",") if r.strip()] if role else []
        for group in roles:
            sink.group(group, None, role.location())  # type: ignore[union-attr]
        for group in roles or ["all"]:
            sink.host(group, name, entries, instance.node.location())
