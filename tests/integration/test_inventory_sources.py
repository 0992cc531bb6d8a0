"""Inventory sources beyond YAML (issue 7) against real hosts: a deploy whose hosts come from
a Terraform state, and one whose hosts come from an executable inventory script. Connection
settings sit in `inventories/test.vars.yml`, as the docs say."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import (
    Project,
    make_sourced_project,
    write_inventory_script,
    write_tfstate,
)

TARGETS = ["web1", "web2", "web3"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_sourced_project(tmp_path / "project", clean_fleet, TARGETS)


def deployed_to(project: Project, hosts: list[str]) -> None:
    release = project.current(hosts[0])
    assert release is not None
    for host in hosts:
        assert project.current(host) == release
        assert project.health(host)[1]["version"] == release


def test_deploy_to_the_hosts_of_a_terraform_state(project: Project) -> None:
    roles = {"web1": "web,migrate", "web2": "web", "web3": "web", "web4": "web"}
    environments = {"web1": "test", "web2": "test", "web3": "test", "web4": "staging"}
    write_tfstate(
        project,
        {
            name: {"Name": name, "Role": roles[name], "Environment": environments[name]}
            for name in roles
        },
    )
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_to(project, TARGETS)
    assert project.current("web4") is None  # Environment=staging: not this environment's
    assert [r["action"] for r in project.history("web1")] == ["deploy"]


def test_deploy_to_the_hosts_an_inventory_script_prints(project: Project) -> None:
    fleet = project.fleet
    inventory = {
        "web": {"hosts": TARGETS},
        "migrate": ["web1"],
        "_meta": {"hostvars": {h: {"ansible_host": fleet.host(h).address} for h in TARGETS}},
    }
    write_inventory_script(project, inventory)
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_to(project, TARGETS)
