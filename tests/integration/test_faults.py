"""The fault suite (docs/reliability.md; /work/shared/guide/faults.md). Each test is named after
its fault and checks what must hold afterwards: every host's `current` points at a complete
release, the lock is released or held with a clear owner, and the message names host, step
and the recovering command. The moment of each fault is chosen by the test (a hook, an event
in the JSON stream, a file appearing), never by a sleep racing a timer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployFailed
from deployer.remote import scripts
from deployer.remote.ssh import SSHTransport
from deployer.sandbox import Fleet
from deployer.sandbox.containers import SMALL_DISK
from tests.integration.helpers import APP_ROOT, HOSTS, Project, break_on, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(strategy={"serial": [2]})
    return p


def next_version(project: Project, note: str) -> None:
    (project.app / "VERSION_NOTE").write_text(note + "\n")


def assert_fleet_sound(project: Project, hosts: list[str] = HOSTS) -> None:
    """Every host on a complete release (or none yet), no lock, no staging debris."""
    for host in hosts:
        current = project.current(host)
        if current is not None:
            assert project.complete(host, current), f"{host}: {current} incomplete"
        assert not project.locked(host), f"{host}: lock left"
        assert project.leftovers(host) == [], f"{host}: debris"


class Running:
    """A deploy started through the real CLI with --format json, readable event by event."""

    def __init__(self, project: Project, *args: str, env: dict[str, str] | None = None):
        invoke = Path(sys.executable).with_name("invoke")
        self.proc = subprocess.Popen(
            [str(invoke), *args, "--env", "test", "--format", "json"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.events: list[dict[str, object]] = []

    def wait_for(self, match: Callable[[dict[str, object]], bool], limit: float = 90) -> None:
        deadline = time.monotonic() + limit
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"deploy ended first: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            event = json.loads(line)
            self.events.append(event)
            if match(event):
                return
        raise AssertionError("event never came")

    def finish(self, limit: float = 120) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=limit)
        return self.proc.returncode, out, err


def wait_file(project: Project, host: str, pattern: str, run: Running, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        code, _ = project.fleet.exec(host, f"ls {pattern} >/dev/null 2>&1")
        if code == 0:
            return
        assert run.proc.poll() is None, "deploy ended before the fault point"
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared on {host}")


def big_file(project: Project, megabytes: int) -> None:
    (project.app / "vendor.bin").write_bytes(os.urandom(megabytes * 1024 * 1024))


# ------------------------------------------------------------------ locks and interruptions


def test_fault02_ctrl_c_during_upload_cancels_and_cleans_up(project: Project) -> None:
    first = project.deploy()["web1"]
    big_file(project, 48)
    run = Running(project, "deploy")
    run.wait_for(lambda e: e["event"] == "UploadProgress" and e["sent"] < e["total"])
    started = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130, err
    assert time.monotonic() - started < 30  # uploads stop instead of running to the end
    for host in HOSTS:
        assert project.current(host) == first
        assert project.releases(host) == [first]
    assert_fleet_sound(project)


def test_fault02_ctrl_c_during_migration_waits_for_it_then_cleans_up(project: Project) -> None:
    first = project.deploy()["web1"]
    project.playbook(migrate={"command": "touch /tmp/migrating; sleep 2; python3 migrate.py"})
    next_version(project, "two")
    run = Running(project, "deploy")
    wait_file(project, "web1", "/tmp/migrating", run)
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 130, err
    assert "database was not rolled back" in out
    assert "migrate" in [
        e.get("step") for e in map(json.loads, out.splitlines()) if e["event"] == "StepFinished"
    ]  # it ran to its end
    for host in HOSTS:
        assert project.current(host) == first
        assert project.releases(host) == [first]
    assert_fleet_sound(project)


def test_fault03_sigterm_during_health_wait_stops_waiting(project: Project) -> None:
    first = project.deploy()["web1"]
    project.playbook(health={"deadline": 120})
    (project.app / "WARMUP_S").write_text("600\n")
    run = Running(project, "deploy")
    run.wait_for(lambda e: e["event"] == "StepFinished" and e["step"] == "switch")
    started = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code, out, err = run.finish()
    assert code == 130, err
    assert time.monotonic() - started < 30
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "RunFinished" and summary["message"] == "interrupted"
    for host in HOSTS:
        assert summary["releases"][host] == project.current(host)
        assert project.current(host) in (first, summary["releases"]["web1"])
    assert_fleet_sound(project)


def test_fault04_killed_deployer_keeps_lock_until_unlock_then_converges(project: Project) -> None:
    project.deploy()
    marker = project.root / "staged"
    project.playbook(hooks={"after_stage": [{"local": f"touch {marker}; sleep 60"}]})
    next_version(project, "killed")
    run = Running(project, "deploy")
    run.wait_for(lambda e: e["event"] == "RunStarted")
    while not marker.exists():
        assert run.proc.poll() is None
        time.sleep(0.02)
    run.proc.kill()
    run.proc.wait()
    killed = next(e for e in run.events if e["event"] == "RunStarted")["run_id"]
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 4
    assert "held by" in refused.stderr and "s ago" in refused.stderr
    assert "invoke unlock --env test" in refused.stderr
    for host in HOSTS:  # the lock on every host is the killed run's, by its run id
        info = json.loads(project.sh(host, f"cat {APP_ROOT}/.deploy/lock/info"))
        assert info["run_id"] == killed
    assert project.invoke("unlock", "--env", "test").returncode == 0
    project.playbook(hooks={})
    next_version(project, "after")
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 0, done.stderr
    latest = project.current("web1")
    for host in HOSTS:
        assert project.current(host) == latest
    assert len(project.releases("web1")) == 2  # the killed run's staged release was pruned
    assert_fleet_sound(project)


# ------------------------------------------------------------------ transfer and switch


def test_fault05_connection_drop_mid_upload_switches_nothing(project: Project) -> None:
    first = project.deploy()["web1"]
    big_file(project, 48)
    run = Running(project, "deploy")
    run.wait_for(
        lambda e: e["event"] == "UploadProgress" and e["host"] == "web2" and e["sent"] < e["total"]
    )
    project.fleet.stop("web2", timeout=0)  # the host goes away under the upload
    code, out, err = run.finish()
    assert code == 1, err
    assert "web2" in err and "stage" in err
    project.fleet.start("web2")
    for host in HOSTS:
        assert project.current(host) == first
        assert project.releases(host) == [first]  # nothing partial at a final path
    for host in ("web1", "web3", "web4"):
        assert not project.locked(host)
    # web2 was unreachable during cleanup: its lock names our run and the hint says unlock.
    assert "invoke unlock --env test" in out + err
    assert project.invoke("unlock", "--env", "test").returncode == 0
    # The next deploy converges and clears the killed upload's staging debris.
    # Its app stopped with the container: the checklist sees an unhealthy fleet, and this
    # deploy is the fix, so that item is overridden explicitly.
    assert project.invoke("deploy", "--env", "test", "--override", "health").returncode == 0
    assert_fleet_sound(project)


def test_fault06_corrupted_upload_is_refused_and_never_renamed_in(
    project: Project, tmp_path: Path
) -> None:
    # The archive is hashed while it unpacks into staging (one pass); a mismatch fails the
    # step before anything else runs, and the staged tree is removed, never renamed in.
    loaded = project.load(limit="web1")
    release = api.build(loaded, tmp_path / "build")
    hp = loaded.plan(release.id, "corrupt1").hosts[0]
    transport = SSHTransport()
    try:
        result = transport.run(
            hp.host,
            scripts.stage(
                hp.layout,
                release.id,
                "corrupt1",
                archive=release.archive,
                archive_size=release.archive_size,
                archive_sha256="0" * 64,  # what arrives is not what was sent
                host_files=b"",
                shared_dirs=[],
                shared_files=[],
            ),
            timeout=60,
        )
    finally:
        transport.close()
    assert result.exit_code == scripts.EXIT_CHECKSUM
    assert "checksum mismatch" in result.output
    assert "@@step finalize" not in result.output and "@@staged" not in result.output
    assert project.releases("web1") == []
    assert project.leftovers("web1") == []


def test_fault07_disk_full_names_host_and_path_and_leaves_nothing(project: Project) -> None:
    project.playbook(deploy_to=f"{SMALL_DISK}/app")
    # A release that cannot fit is stopped by the checklist before anything is sent.
    big_file(project, 1)  # bigger than the 512 KiB disk
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "web1" in refused.stdout + refused.stderr and "KiB" in refused.stdout + refused.stderr
    (project.app / "vendor.bin").unlink()
    # A disk that fills up after the check fails the upload, naming host, step and path.
    filler = f"head -c 500k /dev/zero > {SMALL_DISK}/filler || true"
    project.playbook(hooks={"before_stage": [filler]})
    with pytest.raises(DeployFailed) as err:
        api.deploy(project.load(), api.Options())
    text = str(err.value)
    assert "No space left on device" in text and f"{SMALL_DISK}/app" in text
    assert "web1" in text and "upload" in text and "KiB free" in text
    for host in HOSTS:
        code, out = project.fleet.exec(
            host,
            f"ls -A {SMALL_DISK}/app/releases "
            f"{SMALL_DISK}/app/.deploy/staging; "
            f"test -e {SMALL_DISK}/app/current && echo CURRENT",
        )
        assert out.split() == [f"{SMALL_DISK}/app/.deploy/staging:", f"{SMALL_DISK}/app/releases:"]
        assert project.fleet.exec(host, f"test -d {SMALL_DISK}/app/.deploy/lock")[0] != 0


def test_fault08_reader_sees_no_failure_across_hundreds_of_switches(project: Project) -> None:
    first = project.deploy()["web1"]
    next_version(project, "b")
    second = project.deploy()["web1"]
    loaded = project.load(limit="web1")
    hp = loaded.plan(second, "switcher").hosts[0]
    reader = (
        "touch /tmp/reading; n=0; f=0; while [ -e /tmp/reading ]; do "
        f"cat {APP_ROOT}/current/REVISION >/dev/null 2>&1 || f=$((f+1)); n=$((n+1)); done; "
        'echo "$n $f" > /tmp/reader-result'
    )
    container = project.fleet._container("web1")  # noqa: SLF001 - test reaches into the fleet
    container.exec_run(["bash", "-c", reader], user="deploy", detach=True)
    transport = SSHTransport()
    try:
        while project.fleet.exec("web1", "test -e /tmp/reading")[0] != 0:
            time.sleep(0.01)
        for n in range(300):
            target = first if n % 2 == 0 else second
            res = transport.run(
                hp.host,
                scripts.switch(hp.layout, target, f"s{n}", restart=None, env={}),
                timeout=30,
            )
            assert res.ok, res.output
    finally:
        transport.close()
        project.fleet.exec("web1", "rm -f /tmp/reading")
    deadline = time.monotonic() + 30
    while project.fleet.exec("web1", "test -s /tmp/reader-result")[0] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reads, failed = map(int, project.sh("web1", "cat /tmp/reader-result").split())
    assert reads > 300 and failed == 0


# ------------------------------------------------------------------ rollout


def test_fault12_unreachable_host_skipped_only_with_explicit_allowance(project: Project) -> None:
    project.playbook(connection={"connect_timeout": 3})
    project.fleet.stop("web4")
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 5 and "web4" in refused.stderr
    done = project.invoke("deploy", "--env", "test", "--skip-unreachable")
    assert done.returncode == 0, done.stderr
    assert "skipping unreachable host web4" in done.stdout
    release = project.current("web1")
    assert all(project.current(h) == release for h in ("web1", "web2", "web3"))
    project.fleet.start("web4")
    assert project.current("web4") is None
    assert_fleet_sound(project)


def test_fault13_host_hanging_mid_deploy_times_out_and_rolls_back(project: Project) -> None:
    first = project.deploy()["web1"]
    container = project.fleet.host("web3").container_id
    hook = f'if [ "$DEPLOY_HOSTS" = "web3 web4" ]; then docker pause {container} >/dev/null; fi'
    project.playbook(
        hooks={"before_switch": [{"local": hook}]},
        connection={"connect_timeout": 3, "command_timeout": 5},
    )
    next_version(project, "hang")
    started = time.monotonic()
    out = project.invoke("deploy", "--env", "test", timeout=180)
    assert time.monotonic() - started < 120  # timeouts fired; nothing hung
    assert out.returncode == 1, out.stdout + out.stderr
    assert "web3" in out.stderr and "batch 2/2 unhealthy" in out.stderr
    project.fleet.unpause("web3")
    for host in HOSTS:
        assert project.current(host) == first
    for host in ("web1", "web2", "web4"):
        assert not project.locked(host)
    # web3 could not be cleaned up while hanging: its lock has a clear owner and a hint.
    assert "invoke unlock --env test" in out.stdout + out.stderr
    project.invoke("unlock", "--env", "test")
    assert_fleet_sound(project)


@pytest.mark.parametrize("scope", ["all", "batch"])
def test_fault14_health_fails_in_batch_2_of_4(project: Project, scope: str) -> None:
    first = project.deploy()["web1"]
    project.playbook(strategy={"serial": [1], "rollback": scope})
    next_version(project, "bad")
    break_on(project, ["web2"])
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1
    assert "batch 2/4 unhealthy" in out.stderr
    new = [r for r in project.releases("web1") if r != first]
    if scope == "all":
        assert [project.current(h) for h in HOSTS] == [first] * 4
    else:
        assert project.current("web1") == new[0]
        assert [project.current(h) for h in HOSTS[1:]] == [first] * 3
    for host in HOSTS:  # the summary lists every host's release
        assert f"  {host:<8} {project.current(host)}" in out.stdout
    assert_fleet_sound(project)


def test_fault15_failures_at_the_limit_continue_one_more_stops(project: Project) -> None:
    first = project.deploy()["web1"]
    project.playbook(strategy={"serial": [4], "max_fail_percentage": 25})
    next_version(project, "one bad")
    break_on(project, ["web4"])
    at_limit = project.invoke("deploy", "--env", "test")
    assert at_limit.returncode == 3, at_limit.stderr
    second = project.current("web1")
    assert second != first
    assert [project.current(h) for h in HOSTS] == [second, second, second, first]
    next_version(project, "two bad")
    break_on(project, ["web3", "web4"])
    over = project.invoke("deploy", "--env", "test")
    assert over.returncode == 1
    assert [project.current(h) for h in HOSTS] == [second, second, second, first]
    assert_fleet_sound(project)


def test_fault16_slow_start_passes_flapping_fails_with_last_response(project: Project) -> None:
    project.playbook(health={"successes": 3, "interval": 0.2, "deadline": 20})
    (project.app / "WARMUP_S").write_text("2\n")
    assert project.invoke("deploy", "--env", "test").returncode == 0
    first = project.current("web1")
    (project.app / "WARMUP_S").unlink()
    (project.app / "FLAPPING").write_text("yes\n")
    project.playbook(health={"deadline": 4})
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1
    assert "FLAPPING" in out.stderr  # the last response is shown
    assert all(project.current(h) == first for h in HOSTS)
    assert_fleet_sound(project)


def test_fault19_rollback_target_missing_on_one_host_switches_nobody(project: Project) -> None:
    first = project.deploy()["web1"]
    next_version(project, "b")
    second = project.deploy()["web1"]
    project.sh(
        "web3", f"chmod -R u+w {APP_ROOT}/releases/{first} && rm -rf {APP_ROOT}/releases/{first}"
    )
    out = project.invoke("rollback", "--env", "test")
    assert out.returncode == 5
    assert f"web3: release {first} is not on the host" in out.stderr
    assert all(project.current(h) == second for h in HOSTS)
    assert_fleet_sound(project)


def test_fault20_release_order_comes_from_history_not_clock(project: Project) -> None:
    first = project.deploy()["web1"]
    next_version(project, "from a machine whose clock is 25 years behind")
    skewed = subprocess.run(
        [str(Path(sys.executable).with_name("invoke")), "deploy", "--env", "test"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1000000000"},
    )
    assert skewed.returncode == 0, skewed.stderr
    second = project.current("web1")
    assert second is not None and second.startswith("2001") and second < first
    back = project.invoke("rollback", "--env", "test")
    assert back.returncode == 0, back.stderr
    assert all(project.current(h) == first for h in HOSTS)
    listing = project.invoke("releases", "--env", "test").stdout
    assert f"* {first}" in listing
