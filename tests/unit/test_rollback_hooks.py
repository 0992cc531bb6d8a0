"""Rollback hooks over a recording transport: where before_rollback and after_rollback run,
with which variables, and that a failing before_rollback of an explicit rollback (rolling or
blue-green) changes nothing. Real hosts: tests/integration/test_hooks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.config import parse_inventory_yaml, parse_playbook
from deployer.errors import DeployFailed
from deployer.events import EventBus
from deployer.history import Record
from deployer.hooks import rollback_hosts
from deployer.plan import DeployPlan, build_plan
from deployer.remote.recording import RecordingTransport, prepare_output
from deployer.remote.shell import Script
from deployer.remote.transport import Result
from deployer.rollback import rollback
from deployer.runner import Runner
from deployer.strategies.bluegreen.rollback import rollback as blue_green_rollback
from deployer.strategies.bluegreen.traffic import plan_traffic
from tests.unit.planning import plan_for, write_lb_template
from tests.unit.test_blue_green import INVENTORY as BG_INVENTORY
from tests.unit.test_blue_green import PLAYBOOK as BG_PLAYBOOK
from tests.unit.test_blue_green import UPSTREAM

OLD, NEW = "20260101T000000Z-aaaaaaa", "20260102T000000Z-bbbbbbb"

INVENTORY = """
all:
  children:
    web: {hosts: {h1: {ansible_host: 127.0.0.2}, h2: {ansible_host: 127.0.0.3}}}
"""

PLAYBOOK = """
application: app
deploy_to: /srv/app
source: {path: src}
restart: ./restart
health:
  http: {url: "http://{{ ansible_host }}:8000/health", expect_version: true}
  successes: 1
  interval: 0.001
  deadline: 0.05
"""

HOOKS = """
hooks:
  before_rollback: [{remote: "./snapshot"}]
  after_rollback: [{remote: "./notify"}]
  on_failure: [{remote: "./page"}]
"""


def record(release: str, previous: str | None = None, **extra: object) -> str:
    return Record(
        time="2026-01-01T00:00:00Z",
        user="ci",
        release=release,
        action=str(extra.pop("action", "deploy")),
        result="success",
        run_id="r",
        previous=previous,
        **extra,  # type: ignore[arg-type]
    ).to_json()


def facts(current: str, releases: list[str], history: list[str]) -> Result:
    return Result(
        0,
        prepare_output(current=f"/srv/app/releases/{current}", releases=releases, history=history),
    )


def healthy_for(version: str):
    body = f'{{"status": "healthy", "version": "{version}"}}'
    return lambda host, address, port: f"HTTP/1.0 200 OK\r\n\r\n{body}".encode()


def responder(refuse: bool):
    def respond(host, script: Script) -> Result:
        if script.step == "prepare":
            return facts(NEW, [OLD, NEW], [record(OLD), record(NEW, OLD)])
        if refuse and script.step == "hook before_rollback" and host.name == "h2":
            return Result(7, "snapshot refused\n")
        return Result(0, "")

    return respond


def plans(tmp_path: Path, hooks: str = HOOKS):
    inventory = parse_inventory_yaml(INVENTORY, "inv.yml", "test")
    playbook = parse_playbook(PLAYBOOK + hooks, "deploy.yml")

    def plan_for(release_id: str) -> DeployPlan:
        return build_plan(
            playbook,
            inventory.hosts,
            env="test",
            release_id=release_id,
            run_id="run1",
            templates_dir=tmp_path,
            inventory=inventory,
        )

    return plan_for


def run_rollback(tmp_path: Path, transport: RecordingTransport):
    bus = EventBus()
    runner = Runner(transport, bus, parallel=4)
    try:
        return rollback(plans(tmp_path), runner, bus, run_id="run2")
    finally:
        runner.close()


def test_rollback_hosts_name_the_release_rolled_back_to_and_from(tmp_path: Path) -> None:
    plan = plans(tmp_path)(NEW)
    (h1, h2) = rollback_hosts(plan.hosts, to={"h1": OLD, "h2": OLD}, came_from={"h1": NEW})
    assert h1.env["RELEASE_ID"] == OLD and h1.env["RELEASE_PATH"] == f"/srv/app/releases/{OLD}"
    assert h1.env["ROLLBACK_FROM"] == NEW and h2.env["ROLLBACK_FROM"] == ""
    assert h1.env["DEPLOY_ENV"] == "test" and plan.hosts[0].env["RELEASE_ID"] == NEW


def test_rollback_runs_before_rollback_first_and_after_rollback_last(tmp_path: Path) -> None:
    transport = RecordingTransport(responder=responder(refuse=False), http=healthy_for(OLD))
    assert run_rollback(tmp_path, transport) == {"h1": OLD, "h2": OLD}
    steps = ["prepare", "hook before_rollback", "switch", "finish", "hook after_rollback"]
    assert transport.steps("h1") == transport.steps("h2") == steps
    hook = next(s for h, s in transport.calls if h == "h1" and s.step == "hook before_rollback")
    text = hook.render()
    for line in (
        f"export RELEASE_ID={OLD}\n",
        f"export ROLLBACK_FROM={NEW}\n",
        "export DEPLOY_HOSTS='h1 h2'\n",
        "export DEPLOY_HOOK=before_rollback\n",
    ):
        assert line in text


def test_failing_before_rollback_switches_nothing_and_unlocks(tmp_path: Path) -> None:
    transport = RecordingTransport(responder=responder(refuse=True), http=healthy_for(OLD))
    with pytest.raises(DeployFailed) as err:
        run_rollback(tmp_path, transport)
    assert "before_rollback hook failed; no host was switched" in err.value.message
    assert "snapshot refused" in str(err.value)
    assert err.value.exit_code == 1
    steps = ["prepare", "hook before_rollback", "unlock", "hook on_failure"]
    assert transport.steps("h1") == transport.steps("h2") == steps


def test_blue_green_rollback_hooks_run_on_the_color_traffic_returns_to(tmp_path: Path) -> None:
    _blue_green(tmp_path, refuse=False)


def test_blue_green_failing_before_rollback_leaves_traffic_alone(tmp_path: Path) -> None:
    _blue_green(tmp_path, refuse=True)


def _blue_green(tmp_path: Path, *, refuse: bool) -> None:
    write_lb_template(tmp_path, "upstream.conf.j2", UPSTREAM)
    plan, inventory = plan_for(
        BG_INVENTORY, BG_PLAYBOOK + HOOKS, tmp_path, "00000000T000000Z-0000000", run_id="run2"
    )
    traffic = plan_traffic(plan, inventory, tmp_path)
    green_live = record(NEW, OLD, action="traffic", color="green")

    def respond(host, script: Script) -> Result:
        if script.step == "prepare":
            if host.name == "lb1":
                return facts(NEW, [], [green_live])
            color, release = ("blue", OLD) if host.name.startswith("b") else ("green", NEW)
            return facts(release, [OLD, NEW], [record(release, color=color)])
        if refuse and script.step == "hook before_rollback":
            return Result(7, "snapshot refused\n")
        return Result(0, "")

    transport = RecordingTransport(responder=respond, http=healthy_for(OLD))
    bus = EventBus()
    runner = Runner(transport, bus, parallel=8)
    try:
        if refuse:
            with pytest.raises(DeployFailed) as err:
                blue_green_rollback(plan, traffic, runner, bus, run_id="run2")
            assert "before_rollback hook failed; traffic stays on green" in err.value.message
        else:
            blue_green_rollback(plan, traffic, runner, bus, run_id="run2")
    finally:
        runner.close()
    assert ("traffic" in transport.steps("lb1")) is not refuse
    after = ["hook on_failure"] if refuse else ["hook after_rollback"]
    for host in ("b1", "b2"):
        assert transport.steps(host) == ["prepare", "hook before_rollback", "finish", *after]
    for host in ("g1", "g2"):
        assert transport.steps(host) == ["prepare", "finish"]
    hook = next(s for h, s in transport.calls if h == "b1" and s.step == "hook before_rollback")
    assert f"export RELEASE_ID={OLD}\n" in hook.render()
    assert f"export ROLLBACK_FROM={NEW}\n" in hook.render()
    assert "export DEPLOY_HOSTS='b1 b2'\n" in hook.render()
