"""Inventory data that comes from outside the project's own files: Terraform state and outputs,
inventory scripts, host names. It is data, never a template, and host names are checked.

Whoever can tag a cloud instance or feed an inventory script must not be able to run code in
the deploying process (which holds every SSH key and secret). Ansible marks such values
"unsafe" for the same reason. Never render an `Unsafe` value; never drop the mark on a copy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from deployer.config.model import Location
from deployer.errors import ConfigError

__all__ = ["HOST_NAME_HINT", "Unsafe", "check_host_name", "is_unsafe", "mark_unsafe"]

# What DNS and Ansible accept as a name (letters, digits, '-', '.', '_'); IP literals apart.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
HOST_NAME_HINT = (
    "a host name holds only letters, digits, '-', '.' and '_' (or is an IPv4/IPv6 address);"
    " put anything else in a variable"
)


class Unsafe(str):
    """Text the renderer outputs as it is and never expands, whatever `{{ }}` it holds."""

    __slots__ = ()


def is_unsafe(value: object) -> bool:
    return isinstance(value, Unsafe)


def mark_unsafe(value: Any) -> Any:
    """The same value with every string in it (nested in mappings and lists) marked Unsafe.
    Mapping keys stay plain: they are names, looked up, never rendered."""
    if isinstance(value, str):
        return value if isinstance(value, Unsafe) else Unsafe(value)
    if isinstance(value, Mapping):
        return {key: mark_unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mark_unsafe(item) for item in value]
    return value


def check_host_name(name: str, where: Location) -> None:
    """Raise a ConfigError at `where` naming the host unless `name` is a plain host name or an
    IP address. Host names reach templates, commands, file names and the terminal."""
    if _HOST_NAME.fullmatch(name) or _is_ip(name):
        return
    hint = (
        "host ranges like web[01:03] are not supported; list each host"
        if re.search(r"\[[^\]]*:[^\]]*\]", name)
        else HOST_NAME_HINT
    )
    raise ConfigError(
        f"invalid host name {name!r}",
        file=where.file,
        line=where.line,
        key_path=where.key_path or None,
        hint=hint,
    )


def _is_ip(name: str) -> bool:
    address, _, scope = name.partition("%")  # an IPv6 zone: an interface name
    if scope and not _SCOPE.fullmatch(scope):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
