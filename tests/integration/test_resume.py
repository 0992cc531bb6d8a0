"""Interrupted deploys resume (issue 5): `invoke deploy --resume` rebuilds the same release,
leaves hosts already healthy on it alone, brings the rest to it, and the fleet converges."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(strategy={"serial": [2]})
    return p


def last_record(project: Project) -> dict[str, object]:
    records = [json.loads(p.read_text()) for p in (project.root / ".deploy-runs").glob("*.json")]
    return max(records, key=lambda r: r["started"])


def test_resume_after_the_deployer_was_killed_mid_rollout(project: Project) -> None:
    first = project.deploy()["web1"]
    marker = project.root / "batch2"
    hook = f'if [ "$DEPLOY_HOSTS" = "web3 web4" ]; then touch {marker}; sleep 60; fi'
    project.playbook(hooks={"before_switch": [{"local": hook}]})
    (project.app / "VERSION_NOTE").write_text("killed mid-rollout\n")
    invoke = str(Path(sys.executable).with_name("invoke"))
    proc = subprocess.Popen(
        [invoke, "deploy", "--env", "test"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not marker.exists():
        assert proc.poll() is None
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    killed = last_record(project)
    target = killed["release"]
    assert [project.current(h) for h in HOSTS] == [target, target, first, first]
    assert all(project.locked(h) for h in HOSTS)
    project.playbook(hooks={})
    # The source is unchanged, so the same release id is rebuilt byte for byte.
    out = project.invoke("deploy", "--env", "test", "--resume")
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(project.current(h) == target for h in HOSTS)
    assert all(not project.locked(h) for h in HOSTS)  # the dead run's lock was taken over
    resumed = last_record(project)
    switched = {
        h
        for h, rec in resumed["hosts"].items()  # type: ignore[union-attr]
        for s in rec["steps"]
        if s["step"] == "switch"
    }
    assert switched == {"web3", "web4"}  # web1 and web2 were healthy on it already
    uploads = {
        h
        for h, rec in resumed["hosts"].items()  # type: ignore[union-attr]
        for s in rec["steps"]
        if s["step"] == "stage"
    }
    assert uploads == set()  # every host had the release staged by the killed run
    history = project.history("web1")
    assert history[-1]["release"] == target and history[-1]["result"] == "success"


def test_resume_refuses_when_the_source_changed(project: Project) -> None:
    project.deploy()
    project.fleet.stop("web4")
    project.playbook(connection={"connect_timeout": 3})
    (project.app / "VERSION_NOTE").write_text("partial\n")
    assert project.invoke("deploy", "--env", "test", "--skip-unreachable").returncode == 0
    project.fleet.start("web4")
    (project.app / "VERSION_NOTE").write_text("changed since\n")
    out = project.invoke("deploy", "--env", "test", "--resume")
    assert out.returncode == 2 and "the source changed" in out.stderr


def test_resume_after_an_unreachable_host_converges(project: Project) -> None:
    project.deploy()
    project.fleet.stop("web4")
    project.playbook(connection={"connect_timeout": 3})
    (project.app / "VERSION_NOTE").write_text("partial\n")
    assert project.invoke("deploy", "--env", "test", "--skip-unreachable").returncode == 0
    target = project.current("web1")
    project.fleet.start("web4")
    out = project.invoke("deploy", "--env", "test", "--resume")
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(project.current(h) == target for h in HOSTS)
    again = project.invoke("deploy", "--env", "test", "--resume")
    assert again.returncode == 2 and "nothing to resume" in again.stderr
