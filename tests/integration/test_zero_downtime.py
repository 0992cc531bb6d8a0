"""Zero downtime, measured: a client sends requests continuously through real nginx (on web5)
while the fleet behind it is deployed, switched or rolled back, and every response is judged:
none may fail, and the versions seen must change the way the strategy says.

Scenarios add a `with Client(...)` around the operation; the helpers below set up the two
fleets (rolling: web1..web4 all behind nginx; blue-green: see test_blue_green)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployFailed
from deployer.events import CanaryAnalyzed, Event, Notice, RunFinished, StepStarted
from deployer.sandbox import Fleet
from tests.integration.client import Client, Response
from tests.integration.helpers import HOSTS, Project, make_project
from tests.integration.measured import AFTER, LATENCY_CANARY, WARM_UP, new_version, run_measured
from tests.integration.nginx import Nginx
from tests.integration.test_blue_green import BLUE, GREEN, make_blue_green_project


@pytest.fixture
def nginx(clean_fleet: Fleet) -> Nginx:
    return Nginx(clean_fleet, "web5")


def rolling_project(tmp_path: Path, fleet: Fleet, nginx: Nginx) -> Project:
    project = make_project(tmp_path / "project", fleet, HOSTS)
    project.playbook(strategy={"serial": [1]})
    return project


def assert_no_failures(client: Client, nginx: Nginx) -> None:
    # Without drain, retries hide each restart from these GETs: print how many it took
    # (test_drain.py asserts none with drain, POSTs included).
    retried = nginx.retried(client.responses[0].sent if client.responses else 0.0)
    print(f"\nnginx retried {len(retried)} request(s) on another server; {client.summary()}")
    assert client.failures() == [], client.summary() + "\nnginx error.log:\n" + nginx.error_log()
    assert len(client.responses) > WARM_UP + AFTER


def versions_between(responses: list[Response], start: float, end: float) -> set[str | None]:
    return {r.version for r in responses if start <= r.sent and r.answered <= end}


def test_rolling_deploy_one_host_at_a_time_fails_no_request(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = rolling_project(tmp_path, clean_fleet, nginx)
    old = project.deploy()["web1"]
    nginx.start(HOSTS)
    new_version(project, "rolling")
    client = Client(nginx.url + "/health")
    result: dict[str, str | None] = {}

    def deploy(events: list[Event]) -> None:
        result.update(api.deploy(project.load(), api.Options(reporters=[events.append])))  # type: ignore[arg-type]

    run_measured(client, deploy)
    new = result["web1"]
    assert new != old
    assert_no_failures(client, nginx)
    seen = client.versions()
    assert seen[0] == old and seen[-1] == new
    assert set(seen) == {old, new}


def test_rolling_rollback_fails_no_request(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = rolling_project(tmp_path, clean_fleet, nginx)
    first = project.deploy()["web1"]
    new_version(project, "second")
    second = project.deploy()["web1"]
    nginx.start(HOSTS)
    client = Client(nginx.url + "/health")

    def rollback(events: list[Event]) -> None:
        api.rollback(project.load(), api.Options(reporters=[events.append]))

    run_measured(client, rollback)
    assert_no_failures(client, nginx)
    seen = client.versions()
    assert seen[0] == second and seen[-1] == first
    assert set(seen) == {first, second}


def _traffic_step(events: list[Event]) -> tuple[float, float]:
    """When the load balancer's switch step started, and when the deployer had seen nginx
    serve the new release (verify_url) and said traffic now goes there (event times)."""
    started = next(e.at for e in events if isinstance(e, StepStarted) and e.step == "traffic")
    switched = next(
        e.at for e in events if isinstance(e, Notice) and "traffic now goes to" in e.text
    )
    return started, switched


def assert_clean_switch(client: Client, events: list[Event], old: str, new: str) -> None:
    """Only `old` before the switch step started, only `new` once the switch is confirmed.
    In between, for a moment after the reload, nginx's old worker still accepts connections
    beside the new one (measured: about 0.1 s), so both versions may answer: that is what
    verify_url waits out, and it must stay short."""
    started, switched = _traffic_step(events)
    responses = client.responses
    assert versions_between(responses, 0, started) == {old}
    assert versions_between(responses, switched, float("inf")) == {new}
    assert {r.version for r in responses} == {old, new}
    mixed = [r for r in responses if r.version == old and r.sent > _first(responses, new)]
    if mixed:
        overlap = mixed[-1].answered - _first(responses, new)
        assert overlap < 1.0, f"old and new served together for {overlap:.3f}s"


def _first(responses: list[Response], version: str) -> float:
    return next(r.sent for r in responses if r.version == version)


def test_blue_green_switch_serves_only_old_before_and_only_new_after(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    nginx.start()
    project = make_blue_green_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]  # blue, live
    new_version(project, "green")
    client = Client(nginx.url + "/health")
    result: dict[str, str | None] = {}

    def deploy(events: list[Event]) -> None:
        result.update(api.deploy(project.load(), api.Options(reporters=[events.append])))  # type: ignore[arg-type]

    events = run_measured(client, deploy)
    new = result["web3"]
    assert new != old and all(result[h] == new for h in GREEN)
    assert all(result[h] == old for h in BLUE)
    assert_no_failures(client, nginx)
    assert_clean_switch(client, events, old, new)  # type: ignore[arg-type]


def test_blue_green_rollback_switches_back_in_one_step(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    nginx.start()
    project = make_blue_green_project(tmp_path / "project", clean_fleet, nginx)
    old = project.deploy()["web1"]
    new_version(project, "green")
    new = project.deploy()["web3"]
    client = Client(nginx.url + "/health")

    def rollback(events: list[Event]) -> None:
        api.rollback(project.load(), api.Options(reporters=[events.append]))

    events = run_measured(client, rollback)
    assert_no_failures(client, nginx)
    assert_clean_switch(client, events, new, old)  # type: ignore[arg-type]


def canary_project(tmp_path: Path, fleet: Fleet) -> Project:
    project = make_project(tmp_path / "project", fleet, HOSTS)
    project.playbook(strategy=LATENCY_CANARY, health={"timeout": 5})
    return project


def test_promoted_canary_fails_no_request(clean_fleet: Fleet, nginx: Nginx, tmp_path: Path) -> None:
    project = canary_project(tmp_path, clean_fleet)
    old = project.deploy()["web1"]
    nginx.start(HOSTS)
    new_version(project, "canary")
    client = Client(nginx.url + "/health")
    result: dict[str, str | None] = {}

    def deploy(events: list[Event]) -> None:
        result.update(api.deploy(project.load(), api.Options(reporters=[events.append])))  # type: ignore[arg-type]

    events = run_measured(client, deploy)
    new = result["web1"]
    assert new != old and set(result.values()) == {new}
    assert_no_failures(client, nginx)
    # The canary served real traffic during its bake, beside the old release.
    first_bake = next(e.at for e in events if isinstance(e, CanaryAnalyzed))
    assert versions_between(client.responses, 0, first_bake) >= {old, new}
    finished = next(e.at for e in events if isinstance(e, RunFinished))
    assert versions_between(client.responses, finished, float("inf")) == {new}


def test_rolled_back_canary_fails_no_request(
    clean_fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    project = canary_project(tmp_path, clean_fleet)
    old = project.deploy()["web1"]
    nginx.start(HOSTS)
    (project.app / "SLOW_MS").write_text("800\n")  # slow, not failing: only the analysis sees it
    client = Client(nginx.url + "/health")
    failed: list[DeployFailed] = []

    def deploy(events: list[Event]) -> None:
        try:
            api.deploy(project.load(), api.Options(reporters=[events.append]))
        except DeployFailed as exc:
            failed.append(exc)

    events = run_measured(client, deploy)
    assert failed and "canary step 1/3 failed: p95 latency" in failed[0].message
    assert [project.current(h) for h in HOSTS] == [old] * 4
    assert_no_failures(client, nginx)
    verdict = next(e for e in events if isinstance(e, CanaryAnalyzed))
    assert not verdict.promote and verdict.canary.hosts == ("web1",)
    # Only the canary ever answered with the new release, and only until it was rolled back.
    seen = {r.version for r in client.responses}
    assert len(seen) == 2 and old in seen
    finished = next(e.at for e in events if isinstance(e, RunFinished))
    assert versions_between(client.responses, finished, float("inf")) == {old}
