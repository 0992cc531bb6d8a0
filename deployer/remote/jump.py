"""Where a host's jump host is: its `[user@]host[:port]` spec from the inventory or Ansible's
ssh args, parsed. Pure: never connects (remote/ssh.py opens and checks the jump connection)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from deployer.config.model import Host
from deployer.errors import TransportError


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int | None  # None: ~/.ssh/config's Port, else 22
    user: str | None  # None: ~/.ssh/config's User, else the local user


def proxy_jump(host: Host) -> str | None:
    """The host's jump host, `[user@]host[:port]`: `ssh_proxy_jump`, or a ProxyJump given in
    Ansible's `ansible_ssh_common_args` (`-J x` or `-o ProxyJump=x`)."""
    value = host.vars.get("ssh_proxy_jump")
    if value:
        return str(value)
    args = shlex.split(str(host.vars.get("ansible_ssh_common_args") or ""))
    for i, arg in enumerate(args):
        if arg == "-J" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("-J") and len(arg) > 2:
            return arg[2:]
        option = ""
        if arg == "-o" and i + 1 < len(args):
            option = args[i + 1]
        elif arg.startswith("-o"):
            option = arg[2:]
        key, _, val = option.partition("=")
        if key.lower() == "proxyjump" and val:
            return val
    return None


def parse_jump(spec: str) -> Endpoint:
    """`[user@]host[:port]` (only one hop: chains of jump hosts are not supported)."""
    if "," in spec:
        raise TransportError(
            spec, "only one jump host is supported", hint="use a single ProxyJump host"
        )
    user, _, rest = spec.rpartition("@")
    address, sep, port = rest.partition(":")
    if rest.startswith("["):  # [ipv6]:port
        address, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
        sep = ":" if port else ""
    return Endpoint(address, int(port) if sep and port else None, user or None)
