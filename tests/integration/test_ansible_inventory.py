"""An inventory kept as Ansible's docs recommend, deployed to real hosts: a directory per
environment with a hosts file using a range, group_vars/ (a file and a directory) and
host_vars/. The merged variables must reach each host through a rendered template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, Project, make_project

TARGETS = ["web1", "web2", "web3"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet, hosts=TARGETS)
    inventories = p.root / "inventories"
    (inventories / "test.yml").unlink()  # the environment is now the directory test/
    env = inventories / "test"
    (env / "group_vars" / "web").mkdir(parents=True)
    (env / "host_vars").mkdir()
    (env / "hosts").write_text(
        "[web]\nweb[1:3]\n\n[web:vars]\ngreeting=from the inventory file\n\n[migrate]\nweb1\n"
    )
    connection = {
        "ansible_user": "deploy",
        "ansible_port": clean_fleet.host("web1").port,
        "ssh_key_file": str(clean_fleet.key_path),
        "ssh_known_hosts_file": str(clean_fleet.known_hosts_path),
    }
    (env / "group_vars" / "all.yml").write_text(yaml.safe_dump(connection))
    # group_vars/ wins over the inventory file's [web:vars], as in Ansible.
    (env / "group_vars" / "web" / "10-greeting.yml").write_text("greeting: from group_vars\n")
    (env / "group_vars" / "web" / "20-color.yml").write_text("color: blue\n")
    for name in TARGETS:
        host_vars = {"ansible_host": clean_fleet.host(name).address}
        if name == "web2":
            host_vars["greeting"] = "from host_vars"
        (env / "host_vars" / f"{name}.yml").write_text(yaml.safe_dump(host_vars))
    (p.root / "templates" / "greeting.txt.j2").write_text(
        "{{ inventory_hostname }}: {{ greeting }} ({{ color }})\n"
    )
    book = yaml.safe_load((p.root / "playbooks" / "deploy.yml").read_text())
    p.playbook(templates=[*book["templates"], {"src": "greeting.txt.j2", "dest": "greeting"}])
    return p


def test_deploy_with_a_directory_inventory_group_vars_and_host_vars(project: Project) -> None:
    listed = project.invoke("inventory", "--env", "test", "--list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout)["web"] == {"hosts": TARGETS}

    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    release = project.current("web1")
    assert release is not None
    rendered = {
        host: project.sh(host, f"cat {APP_ROOT}/current/greeting").strip() for host in TARGETS
    }
    assert rendered == {
        "web1": "web1: from group_vars (blue)",
        "web2": "web2: from host_vars (blue)",
        "web3": "web3: from group_vars (blue)",
    }
    for host in TARGETS:
        assert project.current(host) == release
        assert project.health(host)[1]["version"] == release
    assert project.current("web4") is None  # not in this inventory
