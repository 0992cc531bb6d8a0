"""The rest of the command surface on real hosts: deploying a git ref, `rollback --to`,
`releases`, command health checks, and the local run record."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_deploy_a_git_ref(project: Project) -> None:
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", "app")
    git(project.root, "commit", "-qm", "v1")
    v1 = git(project.root, "rev-parse", "HEAD")
    (project.app / "VERSION_NOTE").write_text("v2\n")
    git(project.root, "add", "app")
    git(project.root, "commit", "-qm", "v2")
    project.playbook(source={"git": ".", "subdir": "app", "ref": "main"})
    out = project.invoke("deploy", "--env", "test", "--ref", v1[:10])
    assert out.returncode == 0, out.stdout + out.stderr
    release = project.current("web1")
    assert release is not None and release.endswith("-" + v1[:7])
    path = f"/srv/sample-app/releases/{release}"
    assert project.sh("web1", f"head -2 {path}/REVISION").split()[1] == v1
    assert "VERSION_NOTE" not in project.sh("web1", f"ls {path}")
    hostile = project.invoke("deploy", "--env", "test", "--ref", "main;touch /tmp/pwned")
    assert hostile.returncode == 2 and "ref" in hostile.stderr
    code, _ = project.fleet.exec("web1", "test -e /tmp/pwned")
    assert code != 0 and not Path("/tmp/pwned").exists()


def test_rollback_to_an_explicit_release_and_list_releases(project: Project) -> None:
    ids = []
    for n in range(3):
        (project.app / "VERSION_NOTE").write_text(f"{n}\n")
        ids.append(project.deploy()["web1"])
    listing = project.invoke("releases", "--env", "test")
    assert listing.returncode == 0
    assert f"* {ids[2]}" in listing.stdout and f"< {ids[1]}" in listing.stdout
    out = project.invoke("rollback", "--env", "test", "--to", ids[0])
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(project.current(h) == ids[0] for h in HOSTS)
    assert all(project.health(h)[1]["version"] == ids[0] for h in HOSTS)
    bad = project.invoke("rollback", "--env", "test", "--to", "../../etc")
    assert bad.returncode == 2


def test_command_health_check_failure_rolls_back(project: Project) -> None:
    first = project.deploy()["web1"]
    project.playbook(health={"command": "test ! -e NOT_READY", "deadline": 2, "successes": 1})
    (project.app / "NOT_READY").write_text("x\n")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1
    assert "command exited 1" in out.stderr
    assert all(project.current(h) == first for h in HOSTS)


def test_every_run_leaves_a_run_record(project: Project) -> None:
    project.deploy()
    records = sorted((project.root / ".deploy-runs").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["ok"] is True and record["action"] == "deploy"
    steps = [s["step"] for s in record["hosts"]["web1"]["steps"]]
    assert steps == ["prepare", "stage", "migrate", "switch", "finish"]
    assert set(record["releases"].values()) == {record["release"]}


def test_history_is_the_fleets_audit_trail(project: Project) -> None:
    env = {"DEPLOYER_USER": "alice"}
    assert project.invoke("deploy", "--env", "test", env=env).returncode == 0
    first = project.current("web1")
    (project.app / "VERSION_NOTE").write_text("second\n")
    out = project.invoke("deploy", "--env", "test", "--limit", "web1,web2", env=env)
    assert out.returncode == 0, out.stderr
    second = project.current("web1")
    back = project.invoke(
        "rollback", "--env", "test", "--limit", "web1,web2", env={"DEPLOYER_USER": "bob"}
    )
    assert back.returncode == 0, back.stderr

    shown = project.invoke("history", "--env", "test")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3, shown.stdout
    assert re.search(rf"alice\s+deploy\s+{first}  success on web1 web2 web3 web4", lines[0])
    assert re.search(rf"alice\s+deploy\s+{second}  success on web1 web2  \(run ", lines[1])
    assert re.search(rf"bob\s+rollback\s+{first}  success on web1 web2", lines[2])

    last = project.invoke("history", "--env", "test", "--last", "1", "--format", "json")
    data = json.loads(last.stdout)
    assert [(r["action"], r["user"], r["release"]) for r in data["runs"]] == [
        ("rollback", "bob", first)
    ]
    assert data["unreachable"] == {}
