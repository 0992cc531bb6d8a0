"""Hooks (issue 7): local build hooks run on this machine before anything connects; a failing
hook stops the deploy with its output; hooks get the release id, environment and hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


def test_build_hooks_run_locally_with_the_release_id(project: Project) -> None:
    log = project.root / "hooks.log"
    project.playbook(
        hooks={
            "before_build": [{"local": f'echo "before $DEPLOY_ENV $DEPLOY_HOSTS" >> {log}'}],
            "after_build": [{"local": f'echo "after $RELEASE_ID" >> {log}'}],
        }
    )
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    release = project.current("web1")
    assert log.read_text().splitlines() == [
        f"before test {' '.join(HOSTS)}",
        f"after {release}",
    ]


def test_failing_build_hook_stops_before_anything_connects(project: Project) -> None:
    project.playbook(hooks={"before_build": [{"local": "echo lint-found-3-errors; exit 3"}]})
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1
    assert "hook before_build" in out.stderr and "lint-found-3-errors" in out.stderr
    assert all(project.current(h) is None and not project.locked(h) for h in HOSTS)


def test_remote_build_hook_is_refused(project: Project) -> None:
    project.playbook(hooks={"after_build": ["make assets"]})
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 2 and "hooks.after_build" in out.stderr


def test_failing_remote_hook_stops_the_deploy_with_its_output(project: Project) -> None:
    first = project.deploy()["web1"]
    project.playbook(hooks={"before_switch": ["echo cache-warmup-failed >&2; exit 4"]})
    (project.app / "VERSION_NOTE").write_text("next\n")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1
    assert "cache-warmup-failed" in out.stderr
    assert all(project.current(h) == first and not project.locked(h) for h in HOSTS)
