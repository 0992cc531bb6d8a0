"""SSH reach through a jump host (issue 7). Every host shares loopback here, so the proof that
connections really go through the bastion is that they stop working, with the jump host
named, when only the bastion is down. Host keys are checked strictly on both hops. (No host
names are used: a name the bastion resolves would send DNS queries off this machine.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployer.sandbox import Fleet
from tests.integration.helpers import Project, make_project

TARGETS = ["web1", "web2", "web3"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet, hosts=TARGETS)
    bastion = clean_fleet.host("web5")
    inventory = p.root / "inventories" / "test.yml"
    inv = yaml.safe_load(inventory.read_text())
    inv["all"]["vars"]["ssh_proxy_jump"] = f"deploy@{bastion.address}:{bastion.port}"
    inventory.write_text(yaml.safe_dump(inv))
    return p


def test_deploy_goes_through_the_jump_host(project: Project) -> None:
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    release = project.current("web1")
    assert release is not None
    for host in TARGETS:
        assert project.current(host) == release
        assert project.health(host)[1]["version"] == release
    project.playbook(connection={"connect_timeout": 3})
    project.fleet.stop("web5")  # only the bastion goes away
    down = project.invoke("deploy", "--env", "test")
    assert down.returncode == 5
    assert f"jump host deploy@{project.fleet.host('web5').address}" in down.stderr


def test_jump_host_key_is_checked_too(project: Project) -> None:
    bastion = project.fleet.host("web5")
    known = project.root / "known_hosts"
    lines = project.fleet.known_hosts_path.read_text().splitlines()
    known.write_text("\n".join(x for x in lines if not x.startswith(f"[{bastion.address}]")) + "\n")
    inventory = project.root / "inventories" / "test.yml"
    inventory.write_text(
        inventory.read_text().replace(str(project.fleet.known_hosts_path), str(known))
    )
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5
    assert "unknown host key" in out.stderr and "SHA256:" in out.stderr
    assert bastion.address in out.stderr
