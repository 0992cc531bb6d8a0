"""SSH reach the OpenSSH way (issue 7): what the inventory leaves unset comes from
~/.ssh/config (Port, User, IdentityFile, UserKnownHostsFile, HostName, ProxyJump) and keys
from ssh-agent. Each test gives the CLI its own HOME, so ~/.ssh is the test's and nothing
else's. Every name resolves through the config to a loopback address: no DNS query is made."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deployer.sandbox import Fleet
from tests.integration.helpers import Project, make_project

TARGETS = ["web1", "web2", "web3"]
NOWHERE = "127.0.0.254"  # loopback, nothing listens: where an inventory points unless renamed


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet, hosts=TARGETS)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    return ssh.parent


def bare_inventory(project: Project, addresses: dict[str, str]) -> None:
    """An inventory that names only each host's address: no port, user, key or known_hosts.
    (The sample app listens on its host's real address, which `app_listen` names.)"""
    hosts = {
        name: {"ansible_host": address, "app_listen": project.fleet.host(name).address}
        for name, address in addresses.items()
    }
    inventory = {
        "all": {
            "children": {
                "web": {"hosts": hosts},
                "migrate": {"hosts": {TARGETS[0]: {}}},
            }
        }
    }
    (project.root / "inventories" / "test.yml").write_text(yaml.safe_dump(inventory))


def ssh_config(home: Path, text: str) -> None:
    path = home / ".ssh" / "config"
    path.write_text(text)
    path.chmod(0o600)


def host_entry(project: Project, name: str, *, pattern: str | None = None, key: bool = True) -> str:
    host = project.fleet.host(name)
    lines = [
        f"Host {pattern or host.address}",
        f"    HostName {host.address}",
        f"    Port {host.port}",
        "    User deploy",
        f"    UserKnownHostsFile {project.fleet.known_hosts_path}",
    ]
    if key:
        lines.append(f"    IdentityFile {project.fleet.key_path}")
    return "\n".join(lines) + "\n"


def deployed_everywhere(project: Project) -> str:
    release = project.current(TARGETS[0])
    assert release is not None
    for name in TARGETS:
        assert project.current(name) == release
        assert project.health(name)[1]["version"] == release
    return release


def test_port_user_key_and_known_hosts_come_from_ssh_config(project: Project, home: Path) -> None:
    addresses = {name: project.fleet.host(name).address for name in TARGETS}
    addresses["web3"] = NOWHERE  # renamed by HostName below
    bare_inventory(project, addresses)
    entries = [host_entry(project, name) for name in ("web1", "web2")]
    entries.append(host_entry(project, "web3", pattern=NOWHERE))
    ssh_config(home, "\n".join(entries))

    out = project.invoke("deploy", "--env", "test", env={"HOME": str(home), "SSH_AUTH_SOCK": None})
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_everywhere(project)

    # Without the config, the same inventory reaches nothing: port 22, nobody's key.
    (home / ".ssh" / "config").unlink()
    out = project.invoke("status", "--env", "test", env={"HOME": str(home), "SSH_AUTH_SOCK": None})
    assert out.returncode == 5
    assert out.stdout.count("UNREACHABLE") == len(TARGETS), out.stdout
    web1 = project.fleet.host("web1").address
    assert f"cannot connect to {web1}:22:" in out.stdout or (  # this machine runs no sshd
        f"unknown host key for {web1} " in out.stdout  # it does: port 22 answered anyway
    )


def test_proxy_jump_from_ssh_config_checks_the_jump_host_key(project: Project, home: Path) -> None:
    bastion = project.fleet.host("web5")
    bare_inventory(project, {name: project.fleet.host(name).address for name in TARGETS})
    jump = (
        "Host bastion\n"
        f"    HostName {bastion.address}\n"
        f"    Port {bastion.port}\n"
        "    User deploy\n"
        f"    IdentityFile {project.fleet.key_path}\n"
        f"    UserKnownHostsFile {project.fleet.known_hosts_path}\n"
        "    ProxyJump none\n"
    )
    targets = "".join(host_entry(project, name) for name in TARGETS)
    targets = targets.replace("    User deploy\n", "    User deploy\n    ProxyJump bastion\n")
    ssh_config(home, jump + targets)
    env: dict[str, str | None] = {"HOME": str(home), "SSH_AUTH_SOCK": None}

    # The jump host's key is checked like any other (Fabric alone would accept it unseen).
    known = project.fleet.known_hosts_path.read_text().splitlines()
    without = home / "known_hosts"
    without.write_text(
        "".join(line + "\n" for line in known if not line.startswith(f"[{bastion.address}]"))
    )
    ssh_config(home, (jump + targets).replace(str(project.fleet.known_hosts_path), str(without)))
    out = project.invoke("deploy", "--env", "test", env=env)
    assert out.returncode == 5, out.stdout + out.stderr
    assert f"unknown host key for [{bastion.address}]:{bastion.port}" in out.stderr
    assert f"not in {without}" in out.stderr
    assert all(project.current(name) is None for name in TARGETS)

    ssh_config(home, jump + targets)
    out = project.invoke("deploy", "--env", "test", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_everywhere(project)


def test_proxy_command_from_ssh_config_carries_the_connection(project: Project, home: Path) -> None:
    # A ProxyCommand is only the socket: the host key is checked as on any connection.
    used = home / "proxied"
    addresses = {name: project.fleet.host(name).address for name in TARGETS}
    addresses["web3"] = NOWHERE  # only the config's HostName, through the command, reaches it
    bare_inventory(project, addresses)
    proxy = (
        f"    ProxyCommand bash -c 'echo %h:%p >> {used}; exec 3<>/dev/tcp/%h/%p;"
        " cat <&3 & exec cat >&3'\n"
    )
    entries = [host_entry(project, name) for name in ("web1", "web2")]
    entries.append(host_entry(project, "web3", pattern=NOWHERE) + proxy)
    ssh_config(home, "\n".join(entries))
    out = project.invoke("deploy", "--env", "test", env={"HOME": str(home), "SSH_AUTH_SOCK": None})
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_everywhere(project)
    web3 = project.fleet.host("web3")
    assert used.read_text().splitlines() == [f"{web3.address}:{web3.port}"]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if os.path.exists(sock):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_key_from_ssh_agent(project: Project, home: Path, agent: str) -> None:
    inventory = project.root / "inventories" / "test.yml"
    inv = yaml.safe_load(inventory.read_text())
    del inv["all"]["vars"]["ansible_ssh_private_key_file"]
    inventory.write_text(yaml.safe_dump(inv))
    env: dict[str, str | None] = {"HOME": str(home), "SSH_AUTH_SOCK": agent}

    out = project.invoke("status", "--env", "test", env=env)  # the agent holds no key yet
    assert out.returncode == 5
    assert "authentication failed as deploy@" in out.stdout

    added = subprocess.run(
        ["ssh-add", str(project.fleet.key_path)],
        env={**os.environ, "SSH_AUTH_SOCK": agent},
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    out = project.invoke("deploy", "--env", "test", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_everywhere(project)
