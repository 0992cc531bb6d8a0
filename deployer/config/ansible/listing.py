"""An inventory as `ansible-inventory --list` and `--host` print it: every group with its
direct hosts and child groups, and `_meta.hostvars` with each host's merged variables. Values
of variables named like secrets are masked. Builds data only; the task prints it.
"""

from __future__ import annotations

import re
from typing import Any

from deployer.config.model import Inventory
from deployer.errors import ConfigError
from deployer.secrets import MASK

__all__ = ["host_listing", "inventory_listing", "json_value", "masked"]

# Connection passwords (ansible_password, ansible_become_pass, ...) and the usual names for
# credentials. A `*_file` variable names a file, not a secret, and is shown.
_SECRET_NAME = re.compile(
    r"(^|_)(pass|passwd|password|passphrase|secret|secrets|token|api_key|apikey)(_|$)", re.I
)


def inventory_listing(inventory: Inventory) -> dict[str, Any]:
    """The shape of `ansible-inventory --list`, for `json.dumps(..., sort_keys=True)`.

    As Ansible: a host directly in `all` and in no other group is listed under `ungrouped`;
    `all` shows its child groups only; a group with neither hosts nor children is left out;
    a host without variables has no `_meta.hostvars` entry."""
    members = {name: list(hosts) for name, hosts in inventory.members.items()}
    grouped = {h for name, hosts in members.items() if name != "all" for h in hosts}
    ungrouped = members.setdefault("ungrouped", [])
    ungrouped += [h.name for h in inventory.hosts if h.name not in grouped]
    children = {name: list(kids) for name, kids in inventory.children.items()}
    top = children.setdefault("all", [])
    if "ungrouped" not in top:
        top.insert(0, "ungrouped")
    result: dict[str, Any] = {}
    for name in children.keys() | members.keys():
        entry: dict[str, Any] = {}
        if name != "all" and members.get(name):
            entry["hosts"] = members[name]
        if children.get(name):
            entry["children"] = children[name]
        if entry:
            result[name] = entry
    hostvars = {h.name: masked(dict(h.vars)) for h in inventory.hosts if h.vars}
    result["_meta"] = {"hostvars": hostvars}
    return result


def host_listing(inventory: Inventory, name: str) -> dict[str, Any]:
    """The shape of `ansible-inventory --host NAME`: that host's merged variables."""
    for host in inventory.hosts:
        if host.name == name:
            return masked(dict(host.vars))
    raise ConfigError(
        f"no host named {name!r} in the inventory",
        file=inventory.path,
        hint="list the hosts with: inventory --env ENV --list",
    )


def json_value(value: Any) -> Any:
    """`json.dumps(default=...)` for what YAML reads beyond JSON: dates and times in ISO 8601,
    as ansible-inventory prints them."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def masked(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables with the value of every secret-like name replaced by `***`, at any depth."""
    return {key: _masked_value(key, value) for key, value in variables.items()}


def _masked_value(key: str, value: Any) -> Any:
    if _SECRET_NAME.search(key) and not key.endswith("_file"):
        return MASK
    if isinstance(value, dict):
        return masked(value)
    if isinstance(value, list):
        return [masked(item) if isinstance(item, dict) else item for item in value]
    return value
