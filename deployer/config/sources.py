"""Inventory sources that are not lists of hosts written by hand: a Terraform state file, the
output of `terraform output -json`, and an executable script printing Ansible's JSON inventory.

Each is read into the declarations inventory.py builds every inventory from (groups, group
variables, hosts with their variables and where each was found), so precedence, groups and
--limit behave as for YAML. This module never connects to a host; the only thing it runs is the
inventory script itself. Everything read here but the companion `<env>.vars.yml` is marked
Unsafe (config/untrusted.py): a cloud tag or a script's output is data, never a template.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deployer.config.model import Location
from deployer.config.untrusted import check_host_name, mark_unsafe
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


# ---------------------------------------------------------------- Terraform state

_Tag = tuple[str, Location]  # value, where it was written


@dataclass(frozen=True)
class _Instance:
    resource: str  # Terraform address, e.g. module.app.aws_instance.web[0]
    type: str
    node: Node  # the instance object in the state
    attributes: Node
    address: Node | None  # the first present address attribute
    tags: dict[str, _Tag]  # tag key as written -> value

    def tag(self, key: str) -> _Tag | None:
        """A tag by case-insensitive key: GCP and Hetzner labels are lower case."""
        matches = [tag for name, tag in self.tags.items() if name.lower() == key]
        return matches[-1] if matches else None


def _read_state(root: Node, env: str, attributes: tuple[str, ...], sink: InventorySink) -> None:
    top = root.mapping(hint="a Terraform state file is a JSON object with version and resources")
    if "version" not in top:
        raise root.error("not a Terraform state file: no version")
    version = top["version"]
    if version.value != 4:
        raise version.error(
            f"unsupported Terraform state version {version.value!r} (expected 4)",
            hint="write it with Terraform 0.12 or later, or use `terraform output -json`",
        )
    found = list(_instances(top.get("resources"), attributes))
    if not found:
        raise root.error(
            f"no machine among the resources (known types: {', '.join(_ADDRESS_ATTRIBUTES)};"
            f" or any resource with {' or '.join(attributes or _GENERIC_ADDRESS_ATTRIBUTES)})"
        )
    tagged = sorted({tag[0] for i in found if (tag := i.tag("environment"))})
    if tagged:
        found = [i for i in found if (tag := i.tag("environment")) and tag[0] == env]
        if not found:
            raise root.error(
                f"no instance is tagged Environment={env} (tagged: {', '.join(tagged)})",
                hint="once any instance has an Environment tag, only those matching are read",
            )
    names: dict[str, str] = {}
    for instance in found:
        name, where = _host_name(instance)
        check_host_name(name, where)  # at the Name tag, before it names anything
        if name in names:
            raise ConfigError(
                f"host name {name!r} is also that of {names[name]}",
                file=where.file,
                key_path=where.key_path,
                hint="give each instance its own Name tag",
            )
        names[name] = instance.resource
        if instance.address is None:
            tried = attributes or _ADDRESS_ATTRIBUTES[instance.type]
            raise instance.attributes.error(
                f"{instance.resource} has none of the address attributes {', '.join(tried)}",
                hint=f"choose them with terraform_address_attributes in {env}{VARS_SUFFIX}",
            )
        here = instance.node.location()
        tags = {key: tag[0] for key, tag in instance.tags.items()}
        entries: list[Var] = [
            ("ansible_host", mark_unsafe(instance.address.value), instance.address.location()),
            ("terraform_resource", mark_unsafe(instance.resource), here),
            ("terraform_tags", mark_unsafe(tags), here),
        ]
        groups: list[str] = []
        if role := instance.tag("role"):
            groups = [part.strip() for part in role[0].split(",") if part.strip()]
            for group in groups:
                sink.group(group, None, role[1])
        for group in groups or ["all"]:
            sink.host(group, name, entries, here)


def _instances(resources: Node | None, attributes: tuple[str, ...]) -> Iterator[_Instance]:
    """Managed resource instances that are machines, in state order. Instances of a known type
    always count (a missing address is an error later); others only when they hold one."""
    if resources is None or resources.is_null:
        return
    for resource in resources.items():
        parts = resource.mapping(hint="each resource is an object with type, name and instances")
        if "mode" in parts and parts["mode"].value != "managed":
            continue  # data sources describe things that exist elsewhere
        parts = resource.mapping(required=("type", "name", "instances"))
        kind = parts["type"].text()
        known = kind in _ADDRESS_ATTRIBUTES
        if not known and _NOT_A_MACHINE.search(kind):
            continue
        prefix = f"{parts['module'].text()}." if "module" in parts else ""
        base = f"{prefix}{kind}.{parts['name'].text()}"
        tried = attributes or _ADDRESS_ATTRIBUTES.get(kind, _GENERIC_ADDRESS_ATTRIBUTES)
        for node in parts["instances"].items():
            fields = node.mapping()
            if "deposed" in fields or "attributes" not in fields:
                continue  # a deposed object is an old instance waiting to be destroyed
            attrs = fields["attributes"]
            attrs.mapping()  # an object, or an error naming it
            address = next(filter(None, (_lookup(attrs, name) for name in tried)), None)
            if known or address is not None:
                index = fields["index_key"].value if "index_key" in fields else None
                yield _Instance(
                    resource=base + _index(index),
                    type=kind,
                    node=node,
                    attributes=attrs,
                    address=address,
                    tags=_tags(attrs),
                )


def _index(key: Any) -> str:
    if key is None:
        return ""
    return f"[{key}]" if isinstance(key, int) else f"[{json.dumps(key)}]"


def _lookup(attributes: Node, dotted: str) -> Node | None:
    """The attribute at a dotted path when it holds a non-empty string, else None."""
    node = attributes
    for part in dotted.split("."):
        if isinstance(node.value, dict) and part in node.value:
            node = node.mapping()[part]
        elif isinstance(node.value, list) and part.isdigit() and int(part) < len(node.value):
            node = node.items()[int(part)]
        else:
            return None
    return node if isinstance(node.value, str) and node.value.strip() else None


def _tags(attributes: Node) -> dict[str, _Tag]:
    """Tags and labels as one mapping. A list of strings (DigitalOcean) holds `key:value`."""
    tags: dict[str, _Tag] = {}
    fields = attributes.mapping()
    for name in _TAG_ATTRIBUTES:
        node = fields.get(name)
        if node is None:
            continue
        if isinstance(node.value, dict):
            for key, child in node.mapping().items():
                if isinstance(child.value, str):
                    tags[key] = (child.value, child.location())
        elif isinstance(node.value, list):
            for item in node.items():
                if isinstance(item.value, str) and ":" in item.value:
                    key, _, value = item.value.partition(":")
                    tags[key] = (value, item.location())
    return tags


def _host_name(instance: _Instance) -> tuple[str, Location]:
    """Name tag, else the `name` attribute, else the resource address (brackets made dots:
    host names cannot hold '[' or ']')."""
    if tag := instance.tag("name"):
        return tag
    if name := _lookup(instance.attributes, "name"):
        return name.value, name.location()
    plain = re.sub(r'\["?([^"\]]*)"?\]', r".\1", instance.resource)
    return plain, instance.node.location()


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
