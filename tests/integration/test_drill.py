"""Rollback drills and delivery metrics (issue 17) on real hosts: a drill goes back to the
rollback target and forward again with both legs verified and recorded; a roll-forward that
fails its health check leaves the fleet on the release that passed; the refusals change
nothing; `history --stats` over a scripted sequence equals a hand computation."""

from __future__ import annotations

import json
import statistics
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    project = make_project(tmp_path / "project", clean_fleet)
    (project.app / "SCHEMA").write_text("2\n")  # the sample playbook migrates
    return project


def two_releases(project: Project) -> tuple[str, str]:
    (project.app / "VERSION_NOTE").write_text("one\n")
    first = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("two\n")
    second = project.deploy()["web1"]
    assert first and second and first != second
    return first, second


def drill_records(project: Project, host: str) -> list[dict[str, object]]:
    return [r for r in project.history(host) if r["action"] == "drill"]


def test_drill_goes_back_and_forward_with_both_legs_verified_and_recorded(
    project: Project,
) -> None:
    old, live = two_releases(project)
    log = f"{APP_ROOT}/shared/log/smoke.log"
    # Runs on every host in its live release: proves where each host was at each phase.
    smoke = f'echo "$DRILL_PHASE $(head -n 1 REVISION) $RELEASE_ID" >> {log}'
    out = project.invoke(
        "drill", "--env", "test", "--hold", "2", "--smoke", smoke, "--smoke-on-hosts"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)  # the README shows it
    assert f"time to restore {old}:" in out.stdout
    assert f"time to roll forward to {live}:" in out.stdout
    for host in HOSTS:
        assert project.current(host) == live
        status, body = project.health(host)
        assert (status, body["version"]) == (200, live)
        assert not project.locked(host)
        phases = project.sh(host, f"cat {log}").splitlines()
        # Restored and verified on the old release, held there (at least once), then forward.
        assert phases[0] == f"restored {old} {old}"
        assert phases[-1] == f"forward {live} {live}"
        assert all(line == f"hold {old} {old}" for line in phases[1:-1]) and len(phases) >= 3
        (record,) = drill_records(project, host)
        assert record["result"] == "success"
        assert (record["release"], record["previous"]) == (live, live)
        timings = record["drill"]
        assert isinstance(timings, dict) and timings["target"] == old
        assert timings["restore"] > 0 and timings["forward"] > 0 and timings["hold"] >= 2
    # The drill changed nothing a rollback relies on: the target is still the old release.
    listing = project.invoke("releases", "--env", "test")
    assert f"* {live}" in listing.stdout and f"< {old}" in listing.stdout
    shown = project.invoke("history", "--env", "test")
    assert shown.returncode == 0
    print(shown.stdout)  # the README shows it
    (line,) = [x for x in shown.stdout.splitlines() if " drill " in x]
    assert f"[to {old} and back: restore " in line and "success on web1 web2 web3 web4" in line


def test_drill_whose_roll_forward_fails_its_health_check_leaves_the_fleet_on_a_healthy_release(
    project: Project,
) -> None:
    old, live = two_releases(project)
    sick = f"/tmp/drill-sick-{live}"
    # The live release starts failing its health check while the fleet is away from it.
    project.playbook(health={"command": 'test ! -e "/tmp/drill-sick-$RELEASE_ID"', "deadline": 3})
    smoke = f'if [ "$DRILL_PHASE" = hold ]; then touch {sick}; fi'
    try:
        out = project.invoke(
            "drill", "--env", "test", "--hold", "0", "--smoke", smoke, "--smoke-on-hosts"
        )
        assert out.returncode == 1, out.stdout + out.stderr
        print(out.stdout + out.stderr)  # the README shows it
        assert f"rolling forward to {live} failed" in out.stderr
        assert f"every host is back on {old}, which passed its health checks" in out.stderr
        assert f"--to {live}" in out.stderr  # how to return once it is fixed
        for host in HOSTS:
            assert project.current(host) == old
            assert project.complete(host, old)
            status, body = project.health(host)
            assert (status, body["version"]) == (200, old)
            assert not project.locked(host)
            (record,) = drill_records(project, host)
            assert (record["result"], record["release"], record["previous"]) == (
                "failed",
                old,
                live,
            )
        # The hosts are where a rollback would have left them: a further rollback goes below.
        listing = project.invoke("releases", "--env", "test")
        assert f"* {old}" in listing.stdout
    finally:
        for host in HOSTS:
            project.fleet.exec(host, f"rm -f {sick}")


def test_drill_whose_way_back_fails_returns_every_host_to_the_live_release(
    project: Project,
) -> None:
    old, live = two_releases(project)
    sick = f"/tmp/drill-sick-{old}"
    project.playbook(health={"command": 'test ! -e "/tmp/drill-sick-$RELEASE_ID"', "deadline": 3})
    project.sh("web2", f"touch {sick}")  # the old release cannot start on web2 any more
    try:
        out = project.invoke("drill", "--env", "test", "--hold", "0")
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"rolling back to {old} failed" in out.stderr and "web2" in out.stderr
        assert f"every host is back on {live}, which passed its health checks" in out.stderr
        for host in HOSTS:
            assert project.current(host) == live
            assert project.complete(host, live)
            status, body = project.health(host)
            assert (status, body["version"]) == (200, live)
            assert not project.locked(host)
            (record,) = drill_records(project, host)
            assert (record["result"], record["release"]) == ("failed", live)
        listing = project.invoke("releases", "--env", "test")
        assert f"* {live}" in listing.stdout and f"< {old}" in listing.stdout
    finally:
        project.fleet.exec("web2", f"rm -f {sick}")


def test_drill_refusals_change_nothing(project: Project) -> None:
    (project.app / "VERSION_NOTE").write_text("one\n")
    first = project.deploy()["web1"]
    out = project.invoke("drill", "--env", "test", "--hold", "0")
    assert out.returncode == 5 and "rollback target missing" in out.stderr
    (project.app / "VERSION_NOTE").write_text("two\n")
    (project.app / "SCHEMA").write_text("3\n")
    second = project.deploy()["web1"]
    out = project.invoke("drill", "--env", "test", "--hold", "0")
    assert out.returncode == 5, out.stdout + out.stderr
    assert f"migration state unsafe: {first} needs schema 2" in out.stderr
    # Production, by the inventory's own marking.
    inventory = project.root / "inventories" / "test.yml"
    text = inventory.read_text()
    inventory.write_text(text.replace("  vars:\n", "  vars:\n    production: true\n", 1))
    out = project.invoke("drill", "--env", "test", "--hold", "0", "--schema-ok")
    assert out.returncode == 5 and "marked as production" in out.stderr and "--yes" in out.stderr
    inventory.write_text(text)
    # An unhealthy host: its app is stopped.
    project.fleet.exec("web3", "pkill -u deploy -f app.py || true")
    out = project.invoke("drill", "--env", "test", "--hold", "0", "--schema-ok")
    assert out.returncode == 5 and "not healthy" in out.stderr and "web3" in out.stderr
    for host in HOSTS:
        assert project.current(host) == second
        assert not project.locked(host)
        assert drill_records(project, host) == []


# ------------------------------------------------------------------------- delivery metrics


def git(cwd: Path, *args: str, when: datetime | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    if when is not None:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        env |= {"GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_DATE": stamp}
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()


def parse(value: object) -> datetime:
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_history_stats_of_a_scripted_sequence_equal_a_hand_computation(
    project: Project,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    git(project.root, "init", "-q", "-b", "main")
    project.playbook(source={"git": ".", "subdir": "app", "ref": "main"})

    def commit(note: str, hours_ago: int) -> None:
        (project.app / "VERSION_NOTE").write_text(note + "\n")
        git(project.root, "add", "-A", "app")
        git(project.root, "commit", "-qm", note, when=now - timedelta(hours=hours_ago))

    def run(*args: str, code: int = 0) -> None:
        out = project.invoke(*args, "--env", "test")
        assert out.returncode == code, out.stdout + out.stderr

    commit("one", 5)
    run("deploy")  # d1
    commit("two", 4)
    run("deploy")  # d2
    (project.app / "BROKEN_ON").write_text("*\n")
    commit("three", 3)
    run("deploy", code=1)  # d3: health fails, reverted automatically
    (project.app / "BROKEN_ON").unlink()
    commit("four", 2)
    run("deploy")  # d4
    run("rollback")  # r1: d4 taken back by hand
    (project.app / "migrations" / "003_broken.sql").write_text("THIS IS NOT SQL;\n")
    commit("five", 1)
    run("deploy", code=1)  # d5: the migration fails, nothing switched
    (project.app / "migrations" / "003_broken.sql").unlink()
    commit("six", 1)
    run("deploy")  # d6
    run("drill", "--hold", "1")  # x1: reported apart

    out = project.invoke(
        "history", "--env", "test", "--stats", "--since", "30d", "--format", "json"
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)["figures"]

    # The hand computation, from the raw lines in every host's history file.
    runs: dict[str, list[dict[str, object]]] = {}
    for host in HOSTS:
        for record in project.history(host):
            runs.setdefault(str(record["run_id"]), []).append(record)
    order = sorted(runs, key=lambda r: max(parse(x["ended"]) for x in runs[r]))
    d1, d2, d3, d4, r1, d5, d6, x1 = order
    assert [runs[r][0]["action"] for r in order] == ["deploy"] * 4 + ["rollback"] + [
        "deploy"
    ] * 2 + ["drill"]
    assert {x["undid"] for x in runs[r1]} == {d4}

    def ended(r: str) -> datetime:
        return max(parse(x["ended"]) for x in runs[r])

    def started(r: str) -> datetime:
        return min(parse(x["started"]) for x in runs[r])

    def lead(r: str) -> float:
        return (ended(r) - parse(runs[r][0]["committed"])).total_seconds()

    good = [d1, d2, d4, d6]
    assert figures["deploys_per_day"] == {"value": 4 / 30, "unit": "per_day", "runs": 4, "note": ""}
    assert figures["deploys_per_week"]["value"] == 4 / 30 * 7
    assert figures["lead_time"] == {
        "value": statistics.median(lead(r) for r in good),
        "unit": "seconds",
        "runs": 4,
        "note": "",
    }
    # d3 reverted, d4 rolled back by hand, d5 failed: 3 of 6.
    assert figures["change_failure_rate"]["value"] == 3 / 6
    assert figures["change_failure_rate"]["runs"] == 6
    restores = [
        (ended(d3) - started(d3)).total_seconds(),  # its own revert
        (ended(r1) - started(d4)).total_seconds(),  # the manual rollback
        (ended(d6) - started(d5)).total_seconds(),  # the next healthy release
    ]
    assert figures["time_to_restore"]["value"] == statistics.median(restores)
    assert figures["time_to_restore"]["runs"] == 3
    assert figures["drill_restore"]["runs"] == 1 and figures["drill_restore"]["value"] is None
    assert runs[x1][0]["drill"]["target"] == runs[d2][0]["release"]

    for fmt in ("text", "prometheus"):
        shown = project.invoke(
            "history", "--env", "test", "--stats", "--since", "30d", "--format", fmt
        )
        assert shown.returncode == 0, shown.stderr
        print(shown.stdout)  # the README shows these
    prom = shown.stdout
    assert 'deployer_change_failure_rate{env="test"} 0.5' in prom
    assert 'deployer_delivery_runs{env="test",figure="time_to_restore"} 3' in prom
