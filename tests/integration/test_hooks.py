"""Hooks (issue 7): local build hooks run on this machine before anything connects; a failing
hook stops the deploy with its output; hooks get the release id, environment and hosts; every
point runs where and when it should, rollbacks (automatic and `invoke rollback`) included."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deployer.api import PLACEHOLDER_RELEASE
from deployer.sandbox import Fleet
from tests.integration.helpers import (
    APP_ROOT,
    HOSTS,
    Project,
    assert_no_ssh_since,
    break_on,
    make_project,
)

# What every logging hook writes: point, release, release rolled back from, env, hosts.
LINE = "$DEPLOY_HOOK|$RELEASE_ID|${ROLLBACK_FROM-}|$DEPLOY_ENV|$DEPLOY_HOSTS"
REMOTE_LOG = f"{APP_ROOT}/hooks.log"
ALL = " ".join(HOSTS)


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
    since = time.time()
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1
    assert "hook before_build" in out.stderr and "lint-found-3-errors" in out.stderr
    assert all(project.current(h) is None and not project.locked(h) for h in HOSTS)
    assert_no_ssh_since(project.fleet, since)


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


def logging_hooks(log: Path, points: list[str], *, remote: bool = True) -> dict[str, object]:
    """A local hook appending LINE to `log` at each point, and a remote one appending it to
    REMOTE_LOG on each host of the phase (not for the build points, which are local only)."""
    hooks: dict[str, object] = {}
    for point in points:
        entries: list[dict[str, str]] = [{"local": f'echo "{LINE}" >> {log}'}]
        if remote and point not in ("before_build", "after_build"):
            entries.append({"remote": f'echo "{LINE}" >> {REMOTE_LOG}'})
        hooks[point] = entries
    return hooks


def remote_log(project: Project, host: str) -> list[str]:
    code, out = project.fleet.exec(host, f"cat {REMOTE_LOG}")
    return out.splitlines() if code == 0 else []


def test_every_point_runs_in_order_locally_and_on_the_phase_hosts(project: Project) -> None:
    log = project.root / "hooks.log"
    points = [
        "before_build",
        "after_build",
        "before_stage",
        "after_stage",
        "before_migrate",
        "after_migrate",
        "before_switch",
        "after_switch",
    ]
    # Two batches of two; the migration runs on web1 (the `migrate` group).
    project.playbook(strategy={"serial": [2]}, hooks=logging_hooks(log, points))
    release = project.deploy()["web1"]
    assert release is not None

    def line(point: str, hosts: str, rid: str = release) -> str:
        return f"{point}|{rid}||test|{hosts}"

    stage = [line("before_stage", ALL), line("after_stage", ALL)]
    migrate = [line("before_migrate", "web1"), line("after_migrate", "web1")]
    batch1 = [line("before_switch", "web1 web2"), line("after_switch", "web1 web2")]
    batch2 = [line("before_switch", "web3 web4"), line("after_switch", "web3 web4")]
    assert log.read_text().splitlines() == [
        line("before_build", ALL, PLACEHOLDER_RELEASE),  # the id is not known before the build
        line("after_build", ALL),
        *stage,
        *migrate,
        *batch1,
        *batch2,
    ]
    assert remote_log(project, "web1") == [*stage, *migrate, *batch1]
    assert remote_log(project, "web2") == [*stage, *batch1]
    assert remote_log(project, "web3") == remote_log(project, "web4") == [*stage, *batch2]


def test_failed_health_check_runs_rollback_and_failure_hooks_and_reverts(
    project: Project,
) -> None:
    project.playbook(strategy={"serial": [2]})
    first = project.deploy()["web1"]
    log = project.root / "hooks.log"
    points = ["before_switch", "after_switch", "before_rollback", "after_rollback", "on_failure"]
    # web1 fails only when the deadline passes: a short one keeps the test quick.
    project.playbook(hooks=logging_hooks(log, points), health={"deadline": 4})
    break_on(project, ["web1"])  # batch 1 (web1, web2) fails; web3 and web4 never switch
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1, out.stdout + out.stderr
    local = log.read_text().splitlines()
    failed = local[0].split("|")[1]  # removed from the hosts: its id comes from a hook
    assert failed != first
    assert local == [
        f"before_switch|{failed}||test|web1 web2",
        f"before_rollback|{first}|{failed}|test|web1 web2",
        f"after_rollback|{first}|{failed}|test|web1 web2",
        f"on_failure|{failed}||test|{ALL}",
    ]
    for host in ("web1", "web2"):
        assert remote_log(project, host) == [*local[:3], f"on_failure|{failed}||test|{ALL}"]
    for host in ("web3", "web4"):
        assert remote_log(project, host) == [f"on_failure|{failed}||test|{ALL}"]
    for host in HOSTS:
        assert project.current(host) == first and project.complete(host, first)
        assert not project.locked(host)
        assert project.health(host)[1].get("version") == first


def test_rollback_runs_its_hooks_and_a_failing_before_rollback_changes_nothing(
    project: Project,
) -> None:
    first = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("next\n")
    second = project.deploy()["web1"]
    assert first != second
    log = project.root / "hooks.log"
    hooks = logging_hooks(log, ["before_rollback", "after_rollback", "on_failure"])
    refusing = {"remote": 'echo "snapshot refused before $RELEASE_ID" >&2; exit 7'}
    project.playbook(hooks={**hooks, "before_rollback": [*hooks["before_rollback"], refusing]})

    out = project.invoke("rollback", "--env", "test")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "before_rollback hook failed; no host was switched" in out.stderr
    assert f"snapshot refused before {first}" in out.stderr
    for host in HOSTS:
        assert project.current(host) == second and not project.locked(host)
    assert log.read_text().splitlines() == [
        f"before_rollback|{first}|{second}|test|{ALL}",
        f"on_failure|{first}|{second}|test|{ALL}",
    ]

    log.unlink()
    project.playbook(hooks=hooks)
    out = project.invoke("rollback", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    expected = [
        f"before_rollback|{first}|{second}|test|{ALL}",
        f"after_rollback|{first}|{second}|test|{ALL}",
    ]
    assert log.read_text().splitlines() == expected
    for host in HOSTS:
        assert project.current(host) == first and not project.locked(host)
        # The refused attempt ran the other before_rollback hook and on_failure here too.
        assert remote_log(project, host) == [
            expected[0],
            f"on_failure|{first}|{second}|test|{ALL}",
            *expected,
        ]


def test_failing_after_switch_in_a_later_batch_rolls_back_every_batch(project: Project) -> None:
    """A smoke test hook that fails in batch 2 counts as batch 2 failing: with the default
    `rollback: all`, batch 1 goes back too, so the fleet is not left split."""
    first = project.deploy()["web1"]
    project.playbook(
        strategy={"serial": [2]},
        hooks={
            "after_switch": [
                'test "$DEPLOY_HOSTS" != "web3 web4" || { echo smoke-test-failed >&2; exit 7; }'
            ]
        },
    )
    (project.app / "VERSION_NOTE").write_text("next\n")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "hook after_switch failed in batch 2/2; rolled back 4 host(s)" in out.stderr
    assert "smoke-test-failed" in out.stderr
    for host in HOSTS:
        assert project.current(host) == first, host
        assert project.health(host)[1]["version"] == first
        assert not project.locked(host) and project.leftovers(host) == []
