"""Notifications (issue 7): a deploy and a failed deploy post Slack-compatible JSON to a real
webhook receiver on loopback; the URL comes from an environment variable, never the playbook."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import (
    Project,
    assert_no_ssh_since,
    break_on,
    make_project,
    webhook_receiver,
)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    with webhook_receiver("/hooks/T000/SECRET") as got:
        yield got


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(notify={"webhook": {"url_env": "DEPLOY_WEBHOOK_URL"}}, strategy={"serial": [2]})
    return p


def test_webhook_gets_start_success_failure_and_rollback(
    project: Project, receiver: tuple[str, list[dict[str, object]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = receiver
    monkeypatch.setenv("DEPLOY_WEBHOOK_URL", url)
    monkeypatch.setenv("DEPLOYER_USER", "ci-bot")
    ok = project.invoke("deploy", "--env", "test")
    assert ok.returncode == 0, ok.stderr
    events = [m["deployer"]["event"] for m in received]  # type: ignore[index]
    assert events == ["start", "success"]
    first = project.current("web1")
    success: dict[str, object] = received[-1]["deployer"]  # type: ignore[assignment]
    assert (success["env"], success["release"], success["user"]) == ("test", first, "ci-bot")
    assert sorted(success["hosts"]) == ["web1", "web2", "web3", "web4"]  # type: ignore[call-overload]
    assert isinstance(success["duration"], float) and 0 < success["duration"] < 120
    assert f"deploy {first} → test: succeeded in" in str(received[-1]["text"])

    # An operator's rollback is announced too, with where each host went.
    (project.app / "VERSION_NOTE").write_text("second\n")
    assert project.invoke("deploy", "--env", "test").returncode == 0
    received.clear()
    back = project.invoke("rollback", "--env", "test")
    assert back.returncode == 0, back.stderr
    assert [m["deployer"]["event"] for m in received] == ["start", "rollback"]  # type: ignore[index]
    rollback: dict[str, object] = received[-1]["deployer"]  # type: ignore[assignment]
    assert rollback["ok"] is True and rollback["user"] == "ci-bot"
    assert rollback["releases"] == {h: first for h in ["web1", "web2", "web3", "web4"]}
    assert "rolled back in" in str(received[-1]["text"])
    received.clear()
    (project.app / "VERSION_NOTE").write_text("bad\n")
    break_on(project, ["web3"])
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1
    events = [m["deployer"]["event"] for m in received]  # type: ignore[index]
    assert events[0] == "start" and "failure" in events and "rollback" in events
    # The URL is a secret: it is never printed.
    assert "SECRET" not in failed.stdout + failed.stderr + ok.stdout + ok.stderr


def test_missing_webhook_variable_fails_before_connecting(project: Project) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEPLOY_WEBHOOK_URL"}
    import subprocess
    import sys

    since = time.time()
    out = subprocess.run(
        [str(Path(sys.executable).with_name("invoke")), "deploy", "--env", "test"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert "DEPLOY_WEBHOOK_URL is not set" in out.stderr
    assert project.current("web1") is None
    assert_no_ssh_since(project.fleet, since)
