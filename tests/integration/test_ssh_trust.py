"""Reaching hosts: strict host keys through the deployer's own transport, and a host that is
down before the deploy (nothing changes anywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


def use_known_hosts(project: Project, text: str) -> Path:
    path = project.root / "known_hosts"
    path.write_text(text)
    inv = project.root / "inventories" / "test.yml"
    inv.write_text(inv.read_text().replace(str(project.fleet.known_hosts_path), str(path)))
    return path


def test_unknown_host_key_is_refused_with_its_fingerprint(project: Project) -> None:
    use_known_hosts(project, "")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert "unknown host key" in out.stderr and "SHA256:" in out.stderr
    assert "--accept-new-host-keys" in out.stderr
    assert all(project.current(h) is None for h in HOSTS)


def test_accepting_new_host_keys_is_explicit_and_recorded(project: Project) -> None:
    path = use_known_hosts(project, "")
    out = project.invoke("deploy", "--env", "test", "--accept-new-host-keys")
    assert out.returncode == 0, out.stdout + out.stderr
    recorded = path.read_text()
    for host in HOSTS:
        assert f"[{project.fleet.host(host).address}]:2222 ssh-ed25519 " in recorded
    # And from now on they are simply known.
    assert project.invoke("status", "--env", "test").returncode == 0


def test_changed_host_key_is_refused(project: Project) -> None:
    lines = project.fleet.known_hosts_path.read_text().splitlines()
    keys = [line.split(" ", 1)[1] for line in lines]
    # Every host presents a different key than the one on record (rotated by one).
    forged = [
        line.split(" ", 1)[0] + " " + keys[(i + 1) % len(keys)] for i, line in enumerate(lines)
    ]
    use_known_hosts(project, "\n".join(forged) + "\n")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5
    assert "HOST KEY CHANGED" in out.stderr
    assert all(project.current(h) is None for h in HOSTS)


def test_host_down_before_the_deploy_fails_preflight_and_changes_nothing(
    project: Project,
) -> None:
    project.playbook(connection={"connect_timeout": 3})
    project.fleet.stop("web4")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert "web4" in out.stderr and "cannot connect" in out.stderr
    for host in ("web1", "web2", "web3"):
        assert project.current(host) is None
        assert not project.locked(host)
