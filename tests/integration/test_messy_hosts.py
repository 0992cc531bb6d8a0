"""Real hosts are messy (issue 12): root-owned files in old releases, entries in deploy_to that
another tool or a person left, a finish that is interrupted. Once every host has switched and
is healthy, none of these may fail the run, mark a healthy host as failed, or keep the lock.
Each test checks the hosts themselves: current, lock directory, history, what is left on disk."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, HOSTS, Project, make_project
from tests.integration.test_faults import Running, next_version


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(strategy={"serial": [2]}, keep_releases=2)
    return p


def deploy_cli(project: Project, *extra: str) -> tuple[int, str, list[dict[str, object]]]:
    run = project.invoke("deploy", "--env", "test", "--format", "json", *extra)
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return run.returncode, run.stdout + run.stderr, events


def last_record(project: Project, host: str) -> dict[str, object]:
    return project.history(host)[-1]


def root_owned_pycache(project: Project, host: str, release: str) -> str:
    """What an app running as root leaves in its release: a root-owned, non-empty directory."""
    path = f"{APP_ROOT}/releases/{release}/__pycache__"
    project.sh(host, f"mkdir -p {path} && touch {path}/app.cpython-311.pyc", user="root")
    return path


def test_root_owned_files_in_a_pruned_release_warn_and_the_deploy_succeeds_unlocked(
    project: Project,
) -> None:
    first = project.deploy()["web1"]
    assert first is not None
    for host in HOSTS:
        root_owned_pycache(project, host, first)

    next_version(project, "second")
    project.deploy()
    # The checklist sees it coming once `first` is no longer live: a warning, not a block.
    pre = project.invoke("preflight", "--env", "test")
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert f"releases/{first}/__pycache__ is owned by root" in pre.stdout
    assert "cleanup: {sudo: true}" in pre.stdout
    next_version(project, "third")
    code, output, events = deploy_cli(project)  # keep_releases 2: prunes `first`

    assert code == 0, output
    third = events[-1]["releases"]["web1"]  # type: ignore[index]
    assert third != first
    warnings = [e["text"] for e in events if e.get("event") == "Notice"]
    for host in HOSTS:
        assert project.current(host) == third
        assert project.complete(host, str(third))
        assert not project.locked(host), f"{host}: lock kept"
        record = last_record(project, host)
        assert record["release"] == third and record["result"] == "success"
        # Best effort: the release it could not delete is still there, whole, and named.
        assert first in project.releases(host)
        assert any(
            str(w).startswith(f"{host}: cleanup could not remove {APP_ROOT}/releases/{first}")
            and "owned by root" in str(w)
            and "sudo chown -R deploy:" in str(w)
            for w in warnings
        ), warnings
    finished = events[-1]
    assert finished["ok"] is True
    hosts_warned = {w["host"] for w in finished["extra"]["cleanup_warnings"]}  # type: ignore[index]
    assert hosts_warned == set(HOSTS)

    # The setting the warning names prunes it (the sandbox's deploy user has sudo), and the
    # next deploy retries what was left.
    project.playbook(cleanup={"sudo": True})
    next_version(project, "fourth")
    code, output, events = deploy_cli(project)
    assert code == 0, output
    assert not [e for e in events if e.get("event") == "Notice" and "cleanup" in str(e["text"])]
    for host in HOSTS:
        assert first not in project.releases(host)
        assert len(project.releases(host)) == 2
        assert not project.locked(host)


def test_foreign_current_entries_are_left_alone_reported_and_never_fail_a_deploy(
    project: Project,
) -> None:
    first = project.deploy()["web1"]
    # Left by hand, by another tool, by a restored backup: a directory and a file.
    project.sh("web1", f"mkdir {APP_ROOT}/.current.tmp && touch {APP_ROOT}/.current.tmp/keep")
    project.sh("web2", f"echo mine > {APP_ROOT}/.current.bak")
    # Debris of one of our own killed runs: our link name, pointing into releases/.
    project.sh("web3", f"ln -s {APP_ROOT}/releases/{first} {APP_ROOT}/.current.0123456789ab")

    status = project.invoke("status", "--env", "test")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "left alone: directory .current.tmp" in status.stdout
    assert "left alone: file .current.bak" in status.stdout
    assert ".current.0123456789ab" not in status.stdout  # ours

    next_version(project, "second")
    code, output, events = deploy_cli(project)
    assert code == 0, output
    second = events[-1]["releases"]["web1"]  # type: ignore[index]
    for host in HOSTS:
        assert project.current(host) == second
        assert not project.locked(host)
    assert project.sh("web1", f"ls -A {APP_ROOT}/.current.tmp").split() == ["keep"]
    assert project.sh("web2", f"cat {APP_ROOT}/.current.bak").strip() == "mine"
    code3, _ = project.fleet.exec("web3", f"test -L {APP_ROOT}/.current.0123456789ab")
    assert code3 != 0, "our own dead run's temporary link should have been removed"


def test_rollback_with_foreign_entries_and_root_owned_debris_marks_no_healthy_host_failed(
    project: Project,
) -> None:
    project.deploy()
    next_version(project, "second")
    project.deploy()
    project.sh("web1", f"mkdir {APP_ROOT}/.current.tmp")
    # A sudo hook that wrote into our staging directory as root.
    project.sh(
        "web2",
        f"mkdir -p {APP_ROOT}/.deploy/staging/junk/sub"
        f" && touch {APP_ROOT}/.deploy/staging/junk/sub/f",
        user="root",
    )
    project.sh("web2", f"chown root: {APP_ROOT}/.deploy/staging/junk", user="root")
    run = project.invoke("rollback", "--env", "test", "--format", "json")
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, run.stdout + run.stderr
    finished = events[-1]
    assert finished["event"] == "RunFinished" and finished["ok"] is True
    target = finished["releases"]["web1"]  # type: ignore[index]
    for host in HOSTS:
        assert project.current(host) == target
        assert not project.locked(host), f"{host}: lock kept"
        record = last_record(project, host)
        assert record["action"] == "rollback" and record["result"] == "success"
    assert project.fleet.exec("web1", f"test -d {APP_ROOT}/.current.tmp")[0] == 0
    notices = [str(e["text"]) for e in events if e.get("event") == "Notice"]
    assert any(n.startswith("web2: cleanup could not remove") for n in notices), notices


def test_ctrl_c_during_finish_lets_every_finish_complete(project: Project) -> None:
    project.deploy()
    next_version(project, "second")
    run = Running(project, "deploy")
    # Hold web2's finish in place (its container frozen from the moment its batch is healthy,
    # so its finish cannot end before the interrupt, however loaded the machine), interrupt,
    # then let it go: the deployer must wait for it rather than walk away holding its lock.
    run.wait_for(lambda e: e.get("event") == "BatchFinished" and "web2" in e["healthy"])  # type: ignore[operator]
    project.fleet.pause("web2")
    try:
        run.wait_for(
            lambda e: (
                e.get("event") == "StepStarted"
                and e.get("step") == "finish"
                and e.get("host") == "web2"
            )
        )
        run.proc.send_signal(signal.SIGINT)
    finally:
        project.fleet.unpause("web2")
    code, out, err = run.finish()
    assert code == 130, err
    new = [e for e in run.events if e.get("event") == "RunStarted"][0]["release"]
    for host in HOSTS:
        assert project.current(host) == new
        assert not project.locked(host), f"{host}: lock kept"
        assert last_record(project, host)["result"] == "success"


def test_a_lock_left_by_a_killed_finish_names_it_then_is_taken_over_when_stale(
    project: Project,
) -> None:
    project.deploy()
    info = json.dumps({"run_id": "deadbeef0001", "user": "ci", "action": "deploy"})
    lock = f"{APP_ROOT}/.deploy/lock"
    project.sh("web3", f"mkdir {lock} && printf '%s\\n' '{info}' > {lock}/info")
    project.sh("web3", f"touch {lock}/finishing")
    next_version(project, "second")
    code, output, _ = deploy_cli(project)
    assert code == 4, output
    assert "recorded its outcome" in output and "cleaning up" in output
    assert "deadbeef0001" in project.sh("web3", f"cat {lock}/info")  # not ours to take yet

    project.sh("web3", f"touch -d '-10 minutes' {lock}/finishing")
    code, output, events = deploy_cli(project)
    assert code == 0, output
    assert any(
        "web3: took over a stale lock" in str(e.get("text")) and "deadbeef0001" in str(e["text"])
        for e in events
    )
    for host in HOSTS:
        assert not project.locked(host)
        assert project.current(host) == events[-1]["releases"][host]  # type: ignore[index]
