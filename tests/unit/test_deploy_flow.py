"""The deploy flow over a recording transport: which steps run where, in which order, and
what happens on failure. Real hosts are exercised by tests/integration."""

from pathlib import Path

import pytest

from deployer.errors import DeployFailed, LockHeldError
from deployer.events import EventBus
from deployer.release import build_release
from deployer.remote.recording import RecordingTransport, default_responder, prepare_output
from deployer.remote.transport import Result
from deployer.runner import Runner
from deployer.strategies.rolling import deploy
from tests.unit.planning import plan_for

INVENTORY = """
all:
  children:
    web:
      hosts:
        h1: {ansible_host: 127.0.0.2}
        h2: {ansible_host: 127.0.0.3}
        h3: {ansible_host: 127.0.0.4}
        h4: {ansible_host: 127.0.0.5}
    migrate:
      hosts:
        h2:
"""

PLAYBOOK = """
application: app
deploy_to: /srv/app
source: {path: src}
migrate: {command: ./migrate, run_on: migrate}
restart: ./restart
health:
  http: {url: "http://{{ ansible_host }}:8000/health", expect_version: true}
  successes: 1
  interval: 0.001
  deadline: 0.05
strategy: {serial: [2], max_fail_percentage: 0}
"""


@pytest.fixture
def setup(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('hi')\n")
    release = build_release(source_dir=src, work_dir=tmp_path / "build")
    plan, _ = plan_for(INVENTORY, PLAYBOOK, tmp_path, release.id)
    return plan, release


def healthy_for(version: str):
    body = f'{{"status": "healthy", "version": "{version}"}}'
    return lambda host, address, port: f"HTTP/1.0 200 OK\r\n\r\n{body}".encode()


def run(plan, release, transport):
    bus = EventBus()
    events = []
    bus.subscribe(events.append)
    runner = Runner(transport, bus, parallel=4)
    try:
        return deploy(plan, release, runner, bus), events
    finally:
        runner.close()


def test_happy_path_steps_and_session_count(setup):
    plan, release = setup
    transport = RecordingTransport(http=healthy_for(release.id))
    result, _ = run(plan, release, transport)
    assert result == {h: release.id for h in ("h1", "h2", "h3", "h4")}
    assert transport.steps("h1") == ["prepare", "stage", "switch", "finish"]
    assert transport.steps("h2") == ["prepare", "stage", "migrate", "switch", "finish"]
    # The leader (h1) locks before anyone else; the others' connections open meanwhile, and
    # only the leader lists its release's files (the delta baseline).
    assert transport.calls[0][0] == "h1" and transport.calls[0][1].step == "prepare"
    assert sorted(transport.connected) == ["h2", "h3", "h4"]
    prepares = {h: s.render() for h, s in transport.calls if s.step == "prepare"}
    assert "@@manifest;" in prepares["h1"] and "@@manifest;" not in prepares["h2"]
    # Migration runs once, before any switch.
    order = [s.step for _, s in transport.calls]
    assert order.count("migrate") == 1
    assert order.index("migrate") < order.index("switch")
    # Health went through the hosts' own SSH connections.
    assert sorted(t[0] for t in transport.tcp) == ["h1", "h2", "h3", "h4"]


def test_lock_held_anywhere_changes_nothing_and_releases_ours(setup):
    plan, release = setup

    def responder(host, script):
        if script.step == "prepare" and host.name == "h3":
            return Result(
                75,
                prepare_output(lock="held", lockinfo='{"user": "bob", "run_id": "x"}', lockage=7),
            )
        return default_responder(host, script)

    transport = RecordingTransport(responder=responder)
    with pytest.raises(LockHeldError) as err:
        run(plan, release, transport)
    assert "bob" in str(err.value) and "invoke unlock --env test" in str(err.value)
    assert not any(s.step in ("stage", "switch") for _, s in transport.calls)
    unlocked = sorted(h for h, s in transport.calls if s.step == "unlock")
    assert unlocked == ["h1", "h2", "h4"]


def test_failed_migration_switches_nothing_and_cleans_up(setup):
    plan, release = setup

    def responder(host, script):
        if script.step == "migrate":
            return Result(1, "@@step migrate\nno such table: visits\n")
        return default_responder(host, script)

    transport = RecordingTransport(responder=responder)
    with pytest.raises(DeployFailed) as err:
        run(plan, release, transport)
    assert "migration failed on h2" in str(err.value)
    assert "no such table: visits" in str(err.value)
    assert not any(s.step == "switch" for _, s in transport.calls)
    finishes = [s for _, s in transport.calls if s.step == "finish"]
    assert len(finishes) == 4
    assert all(f"/srv/app/releases/{release.id}" in s.render() for s in finishes)


def test_unhealthy_second_batch_reverts_both_batches_and_warns_about_db(setup):
    plan, release = setup
    previous = "20260101T000000Z-0000000"

    def responder(host, script):
        if script.step == "prepare":
            return Result(
                0,
                prepare_output(current=f"/srv/app/releases/{previous}", releases=[previous]),
            )
        return default_responder(host, script)

    def http(host, address, port):
        version = release.id
        status = "500 Internal" if address in ("127.0.0.4", "127.0.0.5") else "200 OK"
        return f'HTTP/1.0 {status}\r\n\r\n{{"version": "{version}"}}'.encode()

    transport = RecordingTransport(responder=responder, http=http)
    with pytest.raises(DeployFailed) as err:
        run(plan, release, transport)
    assert err.value.releases == {h: previous for h in ("h1", "h2", "h3", "h4")}
    assert "batch 2/2 unhealthy" in str(err.value)
    switches = [(h, s.render()) for h, s in transport.calls if s.step == "switch"]
    reverted = sorted(h for h, text in switches if f"releases/{previous}" in text)
    assert reverted == ["h1", "h2", "h3", "h4"]


def test_failures_at_the_budget_continue(setup, tmp_path):
    plan, release = setup
    from dataclasses import replace

    strategy = replace(plan.playbook.strategy, max_fail_percentage=50)
    plan = replace(plan, playbook=replace(plan.playbook, strategy=strategy))

    def http(host, address, port):
        status = "500 Internal" if address == "127.0.0.2" else "200 OK"
        return f'HTTP/1.0 {status}\r\n\r\n{{"version": "{release.id}"}}'.encode()

    transport = RecordingTransport(http=http)
    with pytest.raises(DeployFailed) as err:
        run(plan, release, transport)
    assert err.value.exit_code == 3  # partial: rollout went on
    assert err.value.releases["h3"] == release.id and err.value.releases["h4"] == release.id
