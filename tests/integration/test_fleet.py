"""The sandbox fleet itself: real sshd hosts, strict host keys, separate filesystems, reset."""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko
import pytest
import yaml

from deployer.sandbox import Fleet, SandboxHost, check_address, down_fleet, find_fleet, start_fleet


def ssh_run(fleet: Fleet, host: SandboxHost | str, command: str) -> tuple[int, str]:
    """Run a command over real SSH as deploy; (exit status, stdout + stderr)."""
    client = fleet.ssh_client(host)
    try:
        _, stdout, stderr = client.exec_command(command, timeout=30)
        output = stdout.read().decode() + stderr.read().decode()
        return stdout.channel.recv_exit_status(), output
    finally:
        client.close()


def strict_client(known_hosts: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(str(known_hosts))
    return client


def connect(client: paramiko.SSHClient, fleet: Fleet, host: SandboxHost) -> None:
    client.connect(
        host.address,
        port=host.port,
        username="deploy",
        key_filename=str(fleet.key_path),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )


def test_every_host_answers_ssh_as_deploy_with_strict_host_key_checking(fleet: Fleet) -> None:
    assert [h.name for h in fleet.hosts] == ["web1", "web2", "web3", "web4", "web5"]
    known = fleet.known_hosts_path.read_text().splitlines()
    assert len(known) == 5
    for host in fleet.hosts:
        assert f"[{host.address}]:{host.port} ssh-ed25519 AAAA" in "\n".join(known)
        client = strict_client(fleet.known_hosts_path)
        try:
            connect(client, fleet, host)
            _, stdout, _ = client.exec_command("id -un")
            assert stdout.read().decode().strip() == "deploy"
        finally:
            client.close()


def test_unknown_host_key_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    client = strict_client(empty)
    try:
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            connect(client, fleet, fleet.hosts[0])
    finally:
        client.close()


def test_changed_host_key_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    # Every container generated its own key: web2's key must not pass as web1's.
    web1, web2 = fleet.hosts[0], fleet.hosts[1]
    keys = dict(line.split(" ", 1) for line in fleet.known_hosts_path.read_text().splitlines())
    assert keys[f"[{web1.address}]:{web1.port}"] != keys[f"[{web2.address}]:{web2.port}"]
    swapped = tmp_path / "known_hosts"
    swapped.write_text(f"[{web1.address}]:{web1.port} {keys[f'[{web2.address}]:{web2.port}']}\n")
    client = strict_client(swapped)
    try:
        with pytest.raises(paramiko.BadHostKeyException):
            connect(client, fleet, web1)
    finally:
        client.close()


def test_each_host_has_its_own_filesystem(clean_fleet: Fleet) -> None:
    assert ssh_run(clean_fleet, "web1", "echo one > /srv/marker") == (0, "")
    assert ssh_run(clean_fleet, "web1", "cat /srv/marker") == (0, "one\n")
    for other in clean_fleet.hosts[1:]:
        status, _ = ssh_run(clean_fleet, other, "test -e /srv/marker")
        assert status == 1, other.name


def test_srv_exists_and_belongs_to_deploy(fleet: Fleet) -> None:
    for host in fleet.hosts:
        assert ssh_run(fleet, host, "stat -c '%U %G' /srv") == (0, "deploy deploy\n")


def test_deploy_has_passwordless_sudo(fleet: Fleet) -> None:
    for host in fleet.hosts:
        assert ssh_run(fleet, host, "sudo -n true") == (0, "")


def test_python_has_http_server_and_sqlite3(fleet: Fleet) -> None:
    status, output = ssh_run(fleet, "web1", 'python3 -c "import http.server, sqlite3"')
    assert (status, output) == (0, "")


def test_each_sshd_listens_only_on_its_own_address(fleet: Fleet, unused_address: str) -> None:
    for host in fleet.hosts:
        # `ss -p` names only processes of the container's own PID namespace, so the
        # listeners it attributes to sshd are exactly this host's.
        status, output = fleet.exec(host, "ss -Hltnp")
        assert status == 0, output
        sshd = [line.split()[3] for line in output.splitlines() if '"sshd"' in line]
        assert sshd == [f"{host.address}:{host.port}"], output
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((unused_address, fleet.hosts[0].port), timeout=5).close()


def test_reset_wipes_srv_and_kills_deploy_background_processes(fleet: Fleet) -> None:
    web1 = fleet.hosts[0]
    status, output = ssh_run(
        fleet,
        web1,
        # Only the sleep goes to the background, detached from the channel's output, as a
        # deployed app's process would be.
        "mkdir -p /srv/app/releases && touch /srv/app/.hidden /srv/app/releases/x;"
        " setsid sleep 1000 </dev/null >/dev/null 2>&1 &",
    )
    assert status == 0, output
    assert fleet.exec(web1, "pgrep -u deploy -x sleep")[0] == 0

    fleet.reset()

    assert fleet.exec(web1, "pgrep -u deploy -x sleep")[0] == 1
    assert fleet.exec(web1, "ls -A /srv") == (0, "")
    assert ssh_run(fleet, web1, "stat -c %U /srv") == (0, "deploy\n")


def test_stopped_host_refuses_connections_and_starts_with_the_same_key(clean_fleet: Fleet) -> None:
    web2 = clean_fleet.hosts[1]
    known_before = clean_fleet.known_hosts_path.read_text()
    ssh_run(clean_fleet, web2, "touch /srv/kept")
    clean_fleet.stop(web2)
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((web2.address, web2.port), timeout=5).close()
    finally:
        clean_fleet.start(web2)
    assert clean_fleet.known_hosts_path.read_text() == known_before
    assert ssh_run(clean_fleet, web2, "test -e /srv/kept") == (0, "")


def test_paused_host_hangs_until_unpaused(clean_fleet: Fleet) -> None:
    web3 = clean_fleet.hosts[2]
    clean_fleet.pause(web3)
    try:
        # The kernel still accepts the TCP connection; sshd never sends its banner.
        with pytest.raises(paramiko.SSHException):
            clean_fleet.ssh_client(web3, timeout=1.5)
    finally:
        clean_fleet.unpause(web3)
    assert ssh_run(clean_fleet, web3, "echo back") == (0, "back\n")


def test_reset_recovers_hosts_left_stopped_or_paused(clean_fleet: Fleet) -> None:
    clean_fleet.stop("web4")
    clean_fleet.pause("web5")
    clean_fleet.reset()
    assert ssh_run(clean_fleet, "web4", "true") == (0, "")
    assert ssh_run(clean_fleet, "web5", "true") == (0, "")


def test_inventory_yaml_describes_the_fleet(fleet: Fleet) -> None:
    inventory = yaml.safe_load(fleet.inventory_yaml())["all"]
    assert inventory["vars"] == {
        "ansible_ssh_private_key_file": str(fleet.key_path),
        "ssh_known_hosts_file": str(fleet.known_hosts_path),
    }
    web = inventory["children"]["web"]["hosts"]
    assert list(web) == ["web1", "web2", "web3", "web4", "web5"]
    assert web["web3"] == {
        "ansible_host": fleet.hosts[2].address,
        "ansible_port": 2222,
        "ansible_user": "deploy",
    }
    assert list(inventory["children"]["migrate"]["hosts"]) == ["web1"]

    custom = yaml.safe_load(fleet.inventory_yaml({"lb": ["web5"]}))["all"]["children"]
    assert list(custom) == ["lb"] and list(custom["lb"]["hosts"]) == ["web5"]


def test_fleet_is_found_and_removed_by_label(
    fleet: Fleet, address_block: list[str], tmp_path: Path
) -> None:
    name = f"{fleet.name}-extra"
    extra = start_fleet(name, [("solo", address_block[5])], tmp_path / "state")
    try:
        found = find_fleet(name)
        assert found is not None
        assert found.hosts == extra.hosts
        assert found.key_path == extra.key_path
        assert ssh_run(found, "solo", "id -un") == (0, "deploy\n")
    finally:
        assert down_fleet(name) == 1
    assert find_fleet(name) is None
    assert find_fleet(fleet.name) is not None  # the session fleet is untouched


# The edges just outside 127.0.0.0/8, 127.0.0.1 (this machine itself), IPv6 loopback and a
# name: only ever handed to the guard, which must refuse them before anything starts.
@pytest.mark.parametrize(
    "address", ["127.0.0.1", "126.255.255.255", "128.0.0.0", "::1", "localhost"]
)
def test_addresses_outside_the_sandbox_range_are_refused(address: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_address(address)
    with pytest.raises(ValueError):
        start_fleet("never", [("h", address)], tmp_path)
