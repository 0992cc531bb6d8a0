"""Terraform state files as an inventory source: every managed resource that is a machine
(known types by their address attributes, others when they hold one), its Name, Role and
Environment tags, host names checked. Everything read is marked Unsafe: a cloud tag is data,
never a template. Reads a file; runs nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deployer.config.model import Location
from deployer.config.untrusted import check_host_name, mark_unsafe
from deployer.config.yamlfile import Node
from deployer.errors import ConfigError

if TYPE_CHECKING:  # sources.py imports this module: the sink's types only, for annotations
    from deployer.config.sources import InventorySink, Var

__all__ = ["read_state"]

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


def read_state(
    root: Node, env: str, attributes: tuple[str, ...], sink: InventorySink, companion: str
) -> None:
    """Declare every machine of a Terraform state (version 4) into `sink`: those tagged
    Environment=<env> when any instance has that tag; Role tags name groups. `companion`: the
    variables file that can choose address attributes, named in errors."""
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
                hint=f"choose them with terraform_address_attributes in {companion}",
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
