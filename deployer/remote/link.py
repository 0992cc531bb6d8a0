"""One host's SSH connection, where ~/.ssh/config sends it: HostName, User, Port and
IdentityFile fill in what the inventory leaves unset, and the socket comes from a checked jump
host's direct-tcpip channel or a ProxyCommand. The same resolution as Fabric's `Connection`,
which this replaces in the transport: building one of those cost about 0.6 ms of CPU per host
(every attribute it sets rebuilds its config), most of what connecting cost us beyond
paramiko's own work (issue 18). Host keys are not this module's business: the transport gives
`client` its policy before `open`."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

import paramiko

DEFAULT_PORT = 22


class Link:
    def __init__(
        self,
        address: str,
        *,
        user: str | None,
        port: int | None,
        ssh_config: Mapping[str, Any],
        client: paramiko.SSHClient,
        connect_timeout: float,
        connect_kwargs: Mapping[str, Any],
        gateway: Link | None = None,
    ) -> None:
        """`ssh_config`: the address's entry (paramiko's lookup), its ProxyCommand included.
        `gateway`: an open jump host's Link, used instead of any ProxyCommand. Raises
        ValueError for a Port that is not a number."""
        self.host = str(ssh_config.get("hostname") or address)
        self.user = user or str(ssh_config.get("user") or getpass.getuser())
        self.port = port or int(ssh_config.get("port", DEFAULT_PORT))
        self.client = client
        self.gateway = gateway
        self.proxy_command = str(ssh_config.get("proxycommand") or "") or None
        self.connect_timeout = connect_timeout
        kwargs = dict(connect_kwargs)
        keys = kwargs.get("key_filename") or []
        keys = [keys] if isinstance(keys, str) else list(keys)
        keys += list(ssh_config.get("identityfile") or [])  # after the inventory's, as ssh does
        if keys:
            kwargs["key_filename"] = keys
        else:
            kwargs.pop("key_filename", None)
        self.connect_kwargs = kwargs

    @property
    def is_connected(self) -> bool:
        transport = self.client.get_transport()
        return bool(transport is not None and transport.is_active())

    def open(self) -> None:
        if self.is_connected:
            return
        sock: Any = None
        if isinstance(self.gateway, Link):
            through = self.gateway.client.get_transport()
            if through is None or not through.is_active():
                raise paramiko.SSHException("the jump host's connection is closed")
            sock = through.open_channel(
                "direct-tcpip", (self.host, self.port), ("", 0), timeout=self.connect_timeout
            )
        elif self.proxy_command:
            sock = paramiko.ProxyCommand(self.proxy_command)
        self.client.connect(
            hostname=self.host,
            port=self.port,
            username=self.user,
            timeout=self.connect_timeout,
            sock=sock,
            **self.connect_kwargs,
        )

    def close(self) -> None:
        self.client.close()
