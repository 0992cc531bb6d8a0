"""Inventory sources beyond YAML (issue 7) against real hosts: a deploy whose hosts come from
a Terraform state, and one whose hosts come from an executable inventory script. Connection
settings sit in `inventories/test.vars.yml`, as the docs say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deployer.sandbox import Fleet
from tests.integration.helpers import Project, make_project

TARGETS = ["web1", "web2", "web3"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet, hosts=TARGETS)
    inventories = p.root / "inventories"
    (inventories / "test.yml").unlink()  # two sources for one environment is an error
    settings = {
        "ansible_user": "deploy",
        "ansible_port": clean_fleet.host("web1").port,
        "ssh_key_file": str(clean_fleet.key_path),
        "ssh_known_hosts_file": str(clean_fleet.known_hosts_path),
    }
    (inventories / "test.vars.yml").write_text(yaml.safe_dump(settings))
    return p


def instance(index: int, name: str, address: str, tags: dict[str, str]) -> dict[str, object]:
    return {
        "index_key": index,
        "schema_version": 1,
        "attributes": {"id": f"i-{index:016x}", "private_ip": address, "tags": tags},
    }


def deployed_to(project: Project, hosts: list[str]) -> None:
    release = project.current(hosts[0])
    assert release is not None
    for host in hosts:
        assert project.current(host) == release
        assert project.health(host)[1]["version"] == release


def test_deploy_to_the_hosts_of_a_terraform_state(project: Project) -> None:
    fleet = project.fleet
    roles = {"web1": "web,migrate", "web2": "web", "web3": "web", "web4": "web"}
    environments = {"web1": "test", "web2": "test", "web3": "test", "web4": "staging"}
    state = {
        "version": 4,
        "terraform_version": "1.7.5",
        "resources": [
            {
                "mode": "managed",
                "type": "aws_instance",
                "name": "app",
                "instances": [
                    instance(
                        i,
                        name,
                        fleet.host(name).address,
                        {"Name": name, "Role": roles[name], "Environment": environments[name]},
                    )
                    for i, name in enumerate(roles)
                ],
            }
        ],
    }
    (project.root / "inventories" / "test.tfstate").write_text(json.dumps(state))
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
    script = project.root / "inventories" / "test.py"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "assert sys.argv[1:] == ['--list'], sys.argv\n"
        f"print(json.dumps({inventory!r}))\n"
    )
    script.chmod(0o755)
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    deployed_to(project, TARGETS)
