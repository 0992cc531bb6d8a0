"""How the transport reads ~/.ssh/config: which jump host and known_hosts file a host gets,
and where a connection goes (remote/link.py). A jump host's own ProxyJump is refused, never
followed unchecked. No connection is opened here."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from deployer.config.model import Host
from deployer.errors import ConfigError, TransportError
from deployer.remote.known_hosts import KnownHostsFiles
from deployer.remote.link import Link
from deployer.remote.ssh import Endpoint, SSHTransport

CONFIG = """\
Host 127.0.0.31 127.0.0.32
    ProxyJump bastion
    UserKnownHostsFile /etc/deploy/known_hosts /etc/deploy/other
Host bastion
    HostName 127.0.0.30
    ProxyJump none
Host 127.0.0.40
    ProxyJump 127.0.0.40
Host 127.0.0.50
    ProxyJump 127.0.0.51
Host 127.0.0.51
    ProxyJump 127.0.0.52
Host 127.0.0.60
    ProxyCommand nc %h %p
"""


def host(address: str, **vars: object) -> Host:
    return Host(
        name=f"h-{address}", address=address, port=None, user=None, groups=("all",), vars=vars
    )


@pytest.fixture
def transport(tmp_path: Path) -> SSHTransport:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    return SSHTransport(ssh_config=str(path))


def test_jump_host_comes_from_the_inventory_first_then_the_config(transport: SSHTransport) -> None:
    assert transport._jump_spec(host("127.0.0.31")) == "bastion"
    assert transport._jump_spec(host("127.0.0.31", ssh_proxy_jump="ops@127.0.0.35")) == (
        "ops@127.0.0.35"
    )
    assert transport._jump_spec(host("127.0.0.33")) is None  # no entry
    assert transport._jump_spec(host("bastion")) is None  # ProxyJump none
    assert transport._jump_spec(host("127.0.0.40")) is None  # itself, as `Host *` does


def test_known_hosts_files_inventory_then_every_config_file_then_global(
    transport: SSHTransport,
) -> None:
    """Issue 14: every file OpenSSH reads is read; the inventory's file comes first and is
    the one written, else the config's first UserKnownHostsFile, else ~/.ssh/known_hosts."""
    config = transport._ssh_config("127.0.0.31")
    system = [Path("/etc/ssh/ssh_known_hosts"), Path("/etc/ssh/ssh_known_hosts2")]
    files = KnownHostsFiles.for_host(None, config)
    assert files.write == Path("/etc/deploy/known_hosts")
    assert list(files.read) == [Path("/etc/deploy/known_hosts"), Path("/etc/deploy/other"), *system]
    mine = KnownHostsFiles.for_host("/srv/kh", config)
    assert mine.write == Path("/srv/kh")
    assert list(mine.read) == [Path("/srv/kh"), *files.read]
    home = Path.home()
    default = KnownHostsFiles.for_host(None, {})
    assert default.write == home / ".ssh/known_hosts"
    assert list(default.read) == [home / ".ssh/known_hosts", home / ".ssh/known_hosts2", *system]
    global_only = {"userknownhostsfile": "none", "globalknownhostsfile": "/etc/g1 /etc/g2"}
    assert list(KnownHostsFiles.for_host(None, global_only).read) == [
        Path("/etc/g1"),
        Path("/etc/g2"),
    ]


def test_a_jump_host_with_its_own_jump_host_is_refused_before_connecting(
    transport: SSHTransport,
) -> None:
    with pytest.raises(TransportError, match="chains of jump hosts are not supported"):
        transport._connect(
            "web1",
            Endpoint("127.0.0.51", None, None),
            host("127.0.0.50"),
            None,
            where="jump host 127.0.0.51",
        )


def test_a_port_that_is_not_a_number_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("Host 127.0.0.70\n    Port twenty-two\n")
    transport = SSHTransport(ssh_config=str(path))
    with pytest.raises(ConfigError, match=r"~/.ssh/config for 127.0.0.70: .*twenty-two"):
        transport._connect("web1", Endpoint("127.0.0.70", None, None), host("127.0.0.70"), None)


def test_a_connection_takes_what_the_inventory_leaves_unset_from_the_config(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config"
    path.write_text(
        "Host 127.0.0.80\n    HostName 127.0.0.81\n    User ops\n    Port 2200\n"
        "    IdentityFile /keys/from-config\n"
    )
    transport = SSHTransport(ssh_config=str(path))

    def link(address: str, **given: Any) -> Link:
        return Link(
            address,
            user=given.get("user"),
            port=given.get("port"),
            ssh_config=transport._ssh_config(address),
            client=paramiko.SSHClient(),
            connect_timeout=1,
            connect_kwargs={"key_filename": given["key"]} if "key" in given else {},
        )

    configured = link("127.0.0.80", key="/keys/inventory")
    assert (configured.host, configured.user, configured.port) == ("127.0.0.81", "ops", 2200)
    # The inventory's key is offered first, then the config's, as ssh -i does.
    assert configured.connect_kwargs["key_filename"] == ["/keys/inventory", "/keys/from-config"]
    mine = link("127.0.0.80", user="deploy", port=2222)
    assert (mine.host, mine.user, mine.port) == ("127.0.0.81", "deploy", 2222)
    plain = link("127.0.0.82")
    assert (plain.host, plain.user, plain.port) == ("127.0.0.82", getpass.getuser(), 22)
    assert "key_filename" not in plain.connect_kwargs
