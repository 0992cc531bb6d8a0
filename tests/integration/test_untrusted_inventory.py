"""Issue 14, section 1, against real hosts: a cloud tag or an inventory script's value that
carries a Jinja2 payload is data. The deploy either carries it to the host literally or
refuses the host name; the payload never runs in the deploying process."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import (
    APP_ROOT,
    Project,
    make_sourced_project,
    write_inventory_script,
    write_tfstate,
)

TARGETS = ["web1", "web2"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_sourced_project(tmp_path / "project", clean_fleet, TARGETS)


def payload(marker: Path) -> str:
    """Creates `marker` on the controller when an unsandboxed Jinja2 expands it (no spaces,
    so it even passes the old host-name check)."""
    return (
        "{{self.__init__.__globals__.__builtins__.__import__('pathlib')"
        f".Path('{marker}').touch()}}}}"
    )


def add_template(project: Project, text: str) -> None:
    """A second template file, rendered per host into config/seen.txt."""
    (project.root / "templates" / "seen.txt.j2").write_text(text + "\n")
    app_ini = {"src": "app.ini.j2", "dest": "config/app.ini", "mode": "0644"}
    seen = {"src": "seen.txt.j2", "dest": "config/seen.txt", "mode": "0644"}
    project.playbook(templates=[app_ini, seen])


def seen(project: Project, host: str) -> str:
    return project.sh(host, f"cat {APP_ROOT}/current/config/seen.txt")


def test_terraform_tag_with_a_template_payload_reaches_the_host_literally(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-by-tag"
    evil = payload(marker)
    write_tfstate(
        project,
        {
            "web1": {"Name": "web1", "Role": "web,migrate", "Owner": evil},
            "web2": {"Name": "web2", "Role": "web", "Owner": "ops"},
        },
    )
    add_template(project, "owner = {{ terraform_tags.Owner }}")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not marker.exists(), "the tag's payload ran in the deploying process"
    assert f"owner = {evil}\n" in seen(project, "web1")
    assert "owner = ops\n" in seen(project, "web2")


def test_terraform_name_tag_with_a_template_payload_is_refused(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-by-name"
    evil_name = "web1" + payload(marker)
    write_tfstate(
        project,
        {"web1": {"Name": evil_name, "Role": "web,migrate"}, "web2": {"Name": "web2"}},
    )
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 2, out.stdout + out.stderr
    assert not marker.exists(), "the Name tag's payload ran in the deploying process"
    assert (
        "inventories/test.tfstate: resources[0].instances[0].attributes.tags.Name:"
        f" invalid host name {evil_name!r}"
    ) in out.stderr
    for host in TARGETS:
        assert project.current(host) is None  # refused before anything connected


def test_inventory_script_value_with_a_template_payload_reaches_the_host_literally(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-by-script"
    evil = payload(marker)
    fleet = project.fleet
    hostvars = {h: {"ansible_host": fleet.host(h).address, "note": "fine"} for h in TARGETS}
    hostvars["web1"]["note"] = evil
    inventory = {"web": {"hosts": TARGETS}, "migrate": ["web1"], "_meta": {"hostvars": hostvars}}
    write_inventory_script(project, inventory)
    add_template(project, "note = {{ note }}")
    project.playbook(hooks={"after_switch": ["echo {{ note | quote }} > {{ shared_path }}/note"]})
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not marker.exists(), "the script value's payload ran in the deploying process"
    assert f"note = {evil}\n" in seen(project, "web1")
    assert "note = fine\n" in seen(project, "web2")
    # through `| quote`, the same value reaches a remote command as one literal word
    assert project.sh("web1", f"cat {APP_ROOT}/shared/note") == evil + "\n"
