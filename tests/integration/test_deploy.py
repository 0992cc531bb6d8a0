"""The deploy pipeline against a real fleet of four OpenSSH hosts (issue: the deploy pipeline).

Every failure case also checks that the lock is released and no partial release is left."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployFailed, LockHeldError
from deployer.events import Event, StepFinished
from deployer.sandbox import Fleet
from tests.integration.helpers import (
    APP_ROOT,
    HOSTS,
    Project,
    add_migration,
    assert_no_ssh_since,
    break_on,
    fix,
    make_project,
)


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(strategy={"serial": [2]})
    return p


def assert_clean(project: Project, hosts: list[str] = HOSTS) -> None:
    for host in hosts:
        assert not project.locked(host), f"{host}: lock left behind"
        assert project.leftovers(host) == [], f"{host}: staging debris"
        for release in project.releases(host):
            assert project.complete(host, release), f"{host}: {release} is incomplete"


def test_two_batch_rolling_deploy_puts_every_host_on_the_new_release(project: Project) -> None:
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "batch 1/2: web1 web2" in done.stdout and "batch 2/2: web3 web4" in done.stdout
    release = project.current("web1")
    assert release is not None
    for host in HOSTS:
        assert project.current(host) == release
        status, body = project.health(host)
        assert status == 200 and body["version"] == release
        assert project.history(host)[-1]["result"] == "success"
        # Releases are immutable on the host.
        code, _ = project.fleet.exec(host, f"su deploy -c 'touch {APP_ROOT}/releases/{release}/x'")
        assert code != 0
    assert_clean(project)


def test_migration_runs_once_on_one_host_before_any_switch(project: Project) -> None:
    events: list[Event] = []
    api.deploy(project.load(), api.Options(reporters=[events.append]))
    steps = [(e.host, e.step) for e in events if isinstance(e, StepFinished)]
    migrations = [s for s in steps if s[1] == "migrate"]
    assert migrations == [("web1", "migrate")]
    first_switch = next(i for i, s in enumerate(steps) if s[1] == "switch")
    assert steps.index(("web1", "migrate")) < first_switch
    # Every app sees the migrated schema through the shared database.
    for host in HOSTS:
        assert project.health(host)[1]["schema"] == 2
    # The database's own record: exactly one migration run, on web1.
    assert migration_runs(project) == [project.fleet.host("web1").address]


def migration_runs(project: Project) -> list[str]:
    """The hosts (listen addresses) the sample app's migrate.py recorded, oldest first."""
    database = project.sh("web1", "ls /var/lib/fleet-shared/*.sqlite3").split()[0]
    script = (
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
        " print(*[r[0] for r in c.execute('SELECT host FROM migration_runs ORDER BY rowid')])"
    )
    return project.sh("web1", f'python3 -c "{script}" {database}').split()


def test_health_failure_in_second_batch_returns_every_host_to_the_old_release(
    project: Project,
) -> None:
    first = project.deploy()["web1"]
    add_migration(project, 3, "ALTER TABLE visits ADD COLUMN referrer TEXT;\n")
    break_on(project, ["web3", "web4"])
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "batch 2/2 unhealthy" in failed.stderr
    assert "NOT rolled back" in failed.stdout  # the database warning
    for host in HOSTS:
        assert project.current(host) == first
        status, body = project.health(host)
        assert status == 200 and body["version"] == first
        assert project.releases(host) == [first]
        assert f"  {host}" in failed.stdout and first in failed.stdout
    assert_clean(project)


def test_failed_migration_switches_nothing(project: Project) -> None:
    first = project.deploy()["web1"]
    add_migration(project, 3, "ALTER TABLE no_such_table ADD COLUMN x TEXT;\n")
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1
    assert "migration failed on web1" in failed.stderr
    assert "no such table: no_such_table" in failed.stderr
    assert not any(line.split()[1:2] == ["switch"] for line in failed.stdout.splitlines())
    for host in HOSTS:
        assert project.current(host) == first
        assert project.releases(host) == [first]
    assert_clean(project)


def test_rollback_after_a_good_deploy(project: Project) -> None:
    first = project.deploy()["web1"]
    fix(project)
    (project.app / "VERSION_NOTE").write_text("second\n")
    second = project.deploy()["web1"]
    assert first != second
    back = project.invoke("rollback", "--env", "test")
    assert back.returncode == 0, back.stdout + back.stderr
    for host in HOSTS:
        assert project.current(host) == first
        assert project.health(host)[1]["version"] == first
        assert project.history(host)[-1]["action"] == "rollback"
    # Undo of an undo is not silently "forward": there is no earlier release now.
    again = project.invoke("rollback", "--env", "test")
    assert again.returncode != 0
    assert "no earlier successful release" in again.stderr
    assert all(project.current(h) == first for h in HOSTS)
    assert_clean(project)


def test_second_concurrent_deploy_is_refused_by_the_lock(project: Project) -> None:
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(api.deploy(project.load(), api.Options()))
        except Exception as exc:  # noqa: BLE001 - we want to see exactly what each got
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [o for o in outcomes if isinstance(o, dict)]
    refusals = [o for o in outcomes if isinstance(o, LockHeldError)]
    assert len(wins) == 1 and len(refusals) == 1, outcomes
    assert "held by" in str(refusals[0]) and "invoke unlock --env test" in str(refusals[0])
    release = wins[0]["web1"]  # type: ignore[index]
    assert all(project.current(h) == release for h in HOSTS)
    assert_clean(project)


def test_held_lock_names_its_holder_and_unlock_clears_it(project: Project) -> None:
    project.sh(
        "web3",
        f"mkdir -p {APP_ROOT}/.deploy/lock && echo "
        '\'{"user": "mallory", "from": "ci-42", "release": "R", "run_id": "dead"}\''
        f" > {APP_ROOT}/.deploy/lock/info",
    )
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 4
    assert "web3" in refused.stderr and "mallory@ci-42" in refused.stderr
    assert all(project.current(h) is None for h in HOSTS)
    assert not project.locked("web1") and project.locked("web3")
    # The lock on the host is still the one we planted, untouched by the refused run.
    assert '"run_id": "dead"' in project.sh("web3", f"cat {APP_ROOT}/.deploy/lock/info")
    cleared = project.invoke("unlock", "--env", "test")
    assert cleared.returncode == 0 and "mallory" in cleared.stdout
    assert not project.locked("web3")
    # Nothing left to unlock is its own exit code, as is a host that cannot be reached.
    nothing = project.invoke("unlock", "--env", "test")
    assert nothing.returncode == 7, nothing.stdout + nothing.stderr
    assert project.invoke("deploy", "--env", "test").returncode == 0


def test_pruning_keeps_the_rollback_target(project: Project) -> None:
    project.playbook(keep_releases=2)
    deployed = []
    for n in range(4):
        (project.app / "VERSION_NOTE").write_text(f"{n}\n")
        result = api.deploy(project.load(limit="web1"), api.Options())
        assert isinstance(result, dict)
        deployed.append(result["web1"])
    assert project.releases("web1") == sorted(deployed[-2:])
    back = api.rollback(project.load(limit="web1"), api.Options())
    assert back["web1"] == deployed[-2]


def test_dry_run_connects_to_nothing(project: Project, tmp_path: Path) -> None:
    # Point the inventory at a loopback address where nothing listens: a dry run still works.
    inv = project.root / "inventories" / "test.yml"
    inv.write_text(inv.read_text().replace(project.fleet.host("web1").address, "127.0.0.254"))
    since = time.time()
    out = project.invoke("deploy", "--env", "test", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "DRY RUN" in out.stdout and "mv -T" in out.stdout and "127.0.0.254" in out.stdout
    assert all(project.current(h) is None for h in HOSTS)
    code, _ = project.fleet.exec("web2", f"test -e {APP_ROOT}")
    assert code != 0
    assert_no_ssh_since(project.fleet, since)


def test_status_reports_releases_health_and_drift(project: Project) -> None:
    first = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("drift\n")
    api.deploy(project.load(limit="web1"), api.Options())
    out = project.invoke("status", "--env", "test")
    assert out.returncode == 6  # drift
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert first in lines["web2"] and "healthy" in lines["web2"]
    assert f"previous {first}" in lines["web1"]
    assert "DRIFT" in lines["web1"] and "DRIFT" not in lines["web2"]


def test_limit_without_the_migration_host_is_refused_before_connecting(project: Project) -> None:
    since = time.time()
    out = project.invoke("deploy", "--env", "test", "--limit", "web2")
    assert out.returncode == 2
    assert "migrate.run_on is 'migrate'" in out.stderr
    assert project.current("web2") is None
    assert_no_ssh_since(project.fleet, since)


def test_notice_for_first_deploy_failure_keeps_hosts_on_a_complete_release(
    project: Project,
) -> None:
    break_on(project, "*")
    with pytest.raises(DeployFailed):
        project.deploy()
    # No previous release existed: web1/web2 stay on the (complete) new one, web3/web4 untouched.
    for host in ("web1", "web2"):
        release = project.current(host)
        assert release is not None and project.complete(host, release)
    for host in ("web3", "web4"):
        assert project.current(host) is None and project.releases(host) == []
    assert_clean(project)


def test_rollback_after_a_limited_deploy_names_the_hosts_that_can_go_back(
    project: Project,
) -> None:
    first = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("second\n")
    out = project.invoke("deploy", "--env", "test", "--limit", "web1,web2")
    assert out.returncode == 0, out.stdout + out.stderr
    second = project.current("web1")
    refused = project.invoke("rollback", "--env", "test")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "web3: no earlier successful release" in refused.stderr
    assert "`invoke rollback --env test --limit web1,web2`" in refused.stderr
    assert project.current("web1") == second  # nothing switched

    back = project.invoke("rollback", "--env", "test", "--limit", "web1,web2")
    assert back.returncode == 0, back.stdout + back.stderr
    assert all(project.current(h) == first for h in HOSTS)
    assert_clean(project)


def test_bytecode_reaches_the_hosts_only_when_the_source_keeps_it(project: Project) -> None:
    """`source.keep_bytecode`: vendored bytecode compiled for the hosts is deployed (and
    verified like every file); by default it is left out of the release."""
    pycache = project.app / "vendor" / "__pycache__"
    pycache.mkdir(parents=True)
    (project.app / "vendor" / "lib.py").write_text("VALUE = 1\n")
    (pycache / "lib.cpython-311.pyc").write_bytes(b"compiled for the hosts\n")

    project.playbook(source={"path": "app", "keep_bytecode": True})
    kept = project.deploy()
    for host in HOSTS:
        path = f"{APP_ROOT}/releases/{kept[host]}/vendor/__pycache__/lib.cpython-311.pyc"
        assert project.sh(host, f"cat {path}") == "compiled for the hosts\n"

    project.playbook(source={"path": "app"})
    dropped = project.deploy()
    for host in HOSTS:
        assert dropped[host] != kept[host]
        release = f"{APP_ROOT}/releases/{dropped[host]}"
        assert project.sh(host, f"cat {release}/vendor/lib.py") == "VALUE = 1\n"
        assert project.sh(host, f"find {release} -name '*.pyc' | wc -l").strip() == "0"
