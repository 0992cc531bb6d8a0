"""Drain, measured on real hosts behind real nginx (web5): rolling and canary batches leave
the load balancer before they restart (strategy.drain), so no request, GET or POST, meets a
restarting app. A client sends GETs and POSTs (writes, which nginx never retries once sent)
all along; every response is judged, and nginx's access log must show that no request was
retried on another server: nothing was hidden by retries either."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployFailed
from deployer.events import BatchStarted, CanaryAnalyzed, Event, Notice, StepFinished, StepStarted
from deployer.sandbox import Fleet
from tests.integration.client import Client, Response, request
from tests.integration.helpers import APP_ROOT, HOSTS, REPO, Project, make_project
from tests.integration.measured import LATENCY_CANARY, new_version, run_measured, sample
from tests.integration.nginx import Nginx


@pytest.fixture
def nginx(clean_fleet: Fleet) -> Nginx:
    lb = Nginx(clean_fleet, "web5")
    lb.start(HOSTS)
    return lb


def drain_project(
    root: Path, fleet: Fleet, nginx: Nginx, strategy: dict[str, object] | None = None
) -> Project:
    project = make_project(root, fleet, HOSTS)
    groups = {"web": HOSTS, "lb": ["web5"], "migrate": ["web1"]}
    (root / "inventories" / "test.yml").write_text(fleet.inventory_yaml(groups))
    (root / "templates" / "lb").mkdir()
    shutil.copy(REPO / "templates" / "lb" / "drain.conf.j2", root / "templates" / "lb")
    project.playbook(
        strategy={"serial": [1], "drain": nginx.drain_settings(), **(strategy or {})},
        health={"timeout": 5},
    )
    return project


def canary_drain_project(root: Path, fleet: Fleet, nginx: Nginx) -> Project:
    return drain_project(root, fleet, nginx, LATENCY_CANARY)


def assert_nothing_failed_or_retried(client: Client, nginx: Nginx, since: float) -> None:
    retried = nginx.retried(since)
    print(f"\nnginx retried {len(retried)} request(s) on another server; {client.summary()}")
    assert client.failures() == [], client.summary() + "\nnginx error.log:\n" + nginx.error_log()
    assert client.count("POST") > 10 and client.count("GET") > 10
    assert retried == [], retried[:10]


def assert_drained_hosts_got_nothing(project: Project, nginx: Nginx, events: list[Event]) -> None:
    """Between a drain (settled) and the put-back, nginx sent the drained host nothing."""
    drains = [e for e in events if isinstance(e, StepFinished) and e.step == "drain"]
    backs = [e for e in events if isinstance(e, StepStarted) and e.step == "undrain"]
    assert drains and len(drains) == len(backs)
    log = nginx.access_log()
    for drained, back in zip(drains, backs, strict=True):
        text = next(
            e.text
            for e in events
            if isinstance(e, Notice) and e.at >= drained.at - 0.5 and "drains" in e.text
        )
        hosts = text.split("drains ", 1)[1].split(" (")[0].split(", ")
        addresses = {f"{project.fleet.host(h).address}:8000" for h in hosts}
        served = [r for r in log if drained.at < r.at < back.at and set(r.upstreams) & addresses]
        assert served == [], f"{hosts} got requests while drained: {served[:5]}"


@dataclass
class Drained:
    """What an operation run under traffic left: the client, the events, its outcome."""

    client: Client
    events: list[Event]
    result: dict[str, str | None] = field(default_factory=dict)
    failed: DeployFailed | None = None


def run_drained(
    project: Project,
    nginx: Nginx,
    operation: Callable[[api.Loaded, api.Options], object],
    *,
    fails: bool = False,
) -> Drained:
    """Run `operation` (api.deploy or api.rollback) on the project while GETs and POSTs go
    through nginx all along; then no request failed or was retried, and no drained host got
    one. A DeployFailed is kept only when the scenario `fails`; else it fails the test."""
    client = Client(nginx.url + "/health", post_every=2)
    result: dict[str, str | None] = {}
    failed: list[DeployFailed] = []
    since = time.time()

    def run(events: list[Event]) -> None:
        try:
            out = operation(project.load(), api.Options(reporters=[events.append]))
        except DeployFailed as exc:
            if not fails:
                raise
            failed.append(exc)
            return
        assert isinstance(out, dict), out
        result.update(out)

    events = run_measured(client, run)
    assert_nothing_failed_or_retried(client, nginx, since)
    assert_drained_hosts_got_nothing(project, nginx, events)
    return Drained(client, events, result, failed[0] if failed else None)


def test_rolling_deploy_with_drain_fails_and_retries_no_get_or_post(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = drain_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]
    new_version(project, "drained")
    run = run_drained(project, nginx, api.deploy)
    new = run.result["web1"]
    assert new != old and set(run.result) == set(HOSTS)  # the load balancer is not deployed to
    assert project.current("web5") is None
    assert set(run.client.versions()) == {old, new}
    assert "down" not in nginx.upstream().replace("marked `down`", "")  # every host is back


def test_rolling_rollback_with_drain_fails_and_retries_no_get_or_post(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = drain_project(tmp_path / "project", clean_fleet, nginx)
    first = project.deploy()["web1"]
    new_version(project, "second")
    second = project.deploy()["web1"]
    run = run_drained(project, nginx, api.rollback)
    assert [project.current(h) for h in HOSTS] == [first] * 4
    seen = run.client.versions()
    assert seen[0] == second and seen[-1] == first
    assert len([e for e in run.events if isinstance(e, StepStarted) and e.step == "drain"]) == 4


def test_promoted_canary_with_drain_fails_and_retries_no_get_or_post(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = canary_drain_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]
    new_version(project, "canary")
    run = run_drained(project, nginx, api.deploy)
    new = run.result["web1"]
    assert new != old and set(run.result.values()) == {new}
    assert any(isinstance(e, CanaryAnalyzed) and e.promote for e in run.events)


def test_rolled_back_canary_with_drain_fails_and_retries_no_get_or_post(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = canary_drain_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]
    (project.app / "SLOW_MS").write_text("800\n")  # slow, not failing: only the analysis sees it
    run = run_drained(project, nginx, api.deploy, fails=True)
    assert run.failed and "canary step 1/3 failed: p95 latency" in run.failed.message
    assert [project.current(h) for h in HOSTS] == [old] * 4
    # The canary left the load balancer twice: for its switch, and for its revert.
    drained = [e for e in run.events if isinstance(e, Notice) and "drains web1" in e.text]
    assert len(drained) == 2


def test_slow_post_in_flight_when_its_host_is_drained_completes_with_its_full_response(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = drain_project(tmp_path / "project", clean_fleet, nginx)
    # An app that gets 1 s to stop: restarted in place, it would cut a 4 s request off.
    project.playbook(restart="STOP_TIMEOUT=1 ./bin/restart")
    project.deploy()
    new_version(project, "slow")
    slow: list[Response] = []
    threads: list[threading.Thread] = []
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, BatchStarted) and event.index == 1:
            # Just before batch 1 (web1) leaves: one 4 s POST on each of the 4 servers.
            for n in range(4):
                payload = f"slow order {n}".encode()
                thread = threading.Thread(
                    target=lambda p=payload: slow.append(
                        request(nginx.address, nginx.port, "/orders?ms=4000", p)
                    )
                )
                thread.start()
                threads.append(thread)
            time.sleep(0.5)  # in flight: nginx has sent them to the upstreams

    since = time.time()
    api.deploy(project.load(), api.Options(reporters=[on_event]))
    for thread in threads:
        thread.join(timeout=30)
    assert len(slow) == 4 and [r for r in slow if not r.ok] == [], slow
    web1 = f"{clean_fleet.host('web1').address}:8000"
    on_web1 = [r for r in nginx.access_log() if r.at >= since and r.method == "POST"]
    assert any(web1 in r.upstreams for r in on_web1), on_web1
    # web1 restarted only once its request was answered: the drain waited for it.
    switched = next(
        e.at
        for e in events
        if isinstance(e, StepStarted) and e.step == "switch" and e.host == "web1"
    )
    assert switched > max(r.answered for r in slow)
    assert nginx.retried(since) == []


def test_load_balancer_refusing_the_drained_config_restarts_nothing(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = drain_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]
    before = nginx.upstream()
    pids = {h: _pid(project, h) for h in HOSTS}
    template = project.root / "templates" / "lb" / "drain.conf.j2"
    template.write_text(template.read_text().replace(" down{% endif %}", " down bogus{% endif %}"))
    new_version(project, "refused")
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "draining failed on web5" in failed.stderr, failed.stderr
    assert 'invalid parameter "bogus"' in failed.stderr  # nginx's own words
    assert "no host of this batch was restarted" in failed.stderr
    assert nginx.upstream() == before
    assert [project.current(h) for h in HOSTS] == [old] * 4
    assert {h: _pid(project, h) for h in HOSTS} == pids  # nothing restarted
    client = sample(nginx)
    assert client.failures() == [] and {r.version for r in client.responses} == {old}
    for host in HOSTS:
        assert not project.locked(host) and project.leftovers(host) == []
    assert project.sh("web5", f"ls -A {APP_ROOT} 2>/dev/null || true").strip() == ""


def _pid(project: Project, host: str) -> int:
    code, out = project.fleet.exec(host, f"cat {APP_ROOT}/shared/run/app.pid")
    assert code == 0, out
    return int(out.strip())


def test_ctrl_c_while_a_batch_is_drained_puts_it_back(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = drain_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]
    (project.app / "WARMUP_S").write_text("6\n")  # the new release is slow to become healthy
    invoke = Path(sys.executable).with_name("invoke")
    proc = subprocess.Popen(
        [str(invoke), "deploy", "--env", "test"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while " down;" not in nginx.upstream():  # batch 1 (web1) is out of the load balancer
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # into the switch and the health wait
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, out + err
    assert " down;" not in nginx.upstream(), out + err  # web1 is back in service
    client = sample(nginx)
    assert client.failures() == [], client.summary()
    assert {r.version for r in client.responses} <= {old, project.current("web1")}
    for host in HOSTS:
        assert not project.locked(host), out + err


def test_dry_run_shows_which_hosts_leave_the_load_balancer_in_which_batch(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = drain_project(tmp_path / "project", clean_fleet, nginx, {"serial": [1, 3]})
    shown = project.invoke("deploy", "--env", "test", "--dry-run")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    out = shown.stdout
    assert "drain: load balancer(s) web5 (not deployed to); app hosts web1 web2 web3 web4" in out
    assert "batch 1: web1 leave(s) the load balancer (3 in service), restart, come back" in out
    assert (
        "batch 2: web2, web3, web4 restart(s) in service: draining it would leave 1 of 4 in"
        " service (min_in_service 2)" not in out
    )
    assert "batch 2: web2, web3, web4 leave(s) the load balancer (1 in service)" in out
    assert "== web5 (" not in out  # nothing is deployed to the load balancer
    project.playbook(strategy={"drain": nginx.drain_settings(min_in_service=2)})
    out = project.invoke("deploy", "--env", "test", "--dry-run").stdout
    assert (
        "batch 2: web2, web3, web4 restart(s) in service: draining it would leave 1 of 4 in"
        " service (min_in_service 2)" in out
    )
    assert nginx.upstream().count(" down") == 0  # a dry run changes nothing
