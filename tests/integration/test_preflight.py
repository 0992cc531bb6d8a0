"""The pre-deployment checklist on real hosts (issue 7): `invoke preflight` and the checklist
at the start of every deploy fail for each item they check, name the host and what to do,
change nothing, and `--override` lets a non-critical failure through. Two hosts keep it lean."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from deployer.sandbox.containers import SMALL_DISK
from tests.integration.helpers import APP_ROOT, Project, break_on, fix, make_project

HOSTS = ["web1", "web2"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet, HOSTS)


def item_line(out: str, name: str) -> str:
    """The checklist line of one item: `  <mark> <name> <title>...`."""
    for line in out.splitlines():
        words = line.split()
        if len(words) > 2 and words[1] == name and line.startswith("  "):
            return line
    raise AssertionError(f"no checklist line for {name} in:\n{out}")


def last_record(project: Project) -> dict[str, object]:
    records = [json.loads(p.read_text()) for p in (project.root / ".deploy-runs").glob("*.json")]
    return max(records, key=lambda r: r["started"])


def assert_untouched(project: Project, root: str = APP_ROOT) -> None:
    """No release, no `current`, no lock: the checklist stopped the run before staging."""
    for host in HOSTS:
        assert project.fleet.exec(host, f"ls -A {root}/releases")[1].split() == [], host
        assert project.fleet.exec(host, f"test -e {root}/current")[0] != 0, f"{host}: current"
        assert project.fleet.exec(host, f"test -d {root}/.deploy/lock")[0] != 0, f"{host}: lock"


def test_read_only_preflight_passes_and_notifications_only_warn(project: Project) -> None:
    out = project.invoke("preflight", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert item_line(out.stdout, "hosts").startswith("  ok    hosts")
    assert item_line(out.stdout, "source").startswith("  skip  source")  # a directory
    notify = item_line(out.stdout, "notify")
    assert notify.startswith("  warn  notify") and "notify.webhook is not set" in notify
    assert "(1 warning(s), not blocking)" in out.stdout
    # Read-only: not even the layout was created.
    assert all(project.fleet.exec(h, f"test -e {APP_ROOT}")[0] != 0 for h in HOSTS)
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "preflight checklist:" in done.stdout and "  warn  notify" in done.stdout
    (project.app / "VERSION_NOTE").write_text("two\n")
    strict = project.invoke("deploy", "--env", "test", "--strict")
    assert strict.returncode == 5, strict.stdout + strict.stderr
    assert "notify (warning, strict)" in strict.stderr and "--override notify" in strict.stderr
    assert len(project.releases("web1")) == 1 and not project.locked("web1")


def test_stopped_host_fails_the_hosts_item(project: Project) -> None:
    project.playbook(connection={"connect_timeout": 3})
    project.fleet.stop("web2")
    try:
        out = project.invoke("preflight", "--env", "test")
    finally:
        project.fleet.start("web2")
    assert out.returncode == 5, out.stdout + out.stderr
    line = item_line(out.stdout, "hosts")
    assert line.startswith("  FAIL  hosts") and "[critical, blocks the deploy]" in line
    assert "web2: cannot connect" in out.stdout and "what to do:" in out.stdout
    assert item_line(out.stdout, "disk").startswith("  ok    disk")  # web1 still checked


def test_held_lock_fails_the_lock_item_and_the_deploy_prints_it(project: Project) -> None:
    project.sh(
        "web2",
        f"mkdir -p {APP_ROOT}/.deploy/lock && echo "
        '\'{"user": "mallory", "from": "ci-42", "release": "R", "run_id": "dead"}\''
        f" > {APP_ROOT}/.deploy/lock/info",
    )
    out = project.invoke("preflight", "--env", "test", "--format", "json")
    assert out.returncode == 5, out.stdout + out.stderr
    (checklist,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert checklist["event"] == "Checklist" and checklist["blocking"] == ["lock"]
    lock = next(i for i in checklist["items"] if i["name"] == "lock")
    assert "web2" in lock["detail"] and "mallory@ci-42" in lock["detail"]
    assert "invoke unlock --env test" in lock["remedy"]
    assert not project.locked("web1")  # preflight takes no lock
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 4
    assert item_line(refused.stdout, "lock").startswith("  FAIL  lock")
    assert "mallory@ci-42" in refused.stderr
    assert not project.locked("web1") and project.current("web1") is None


def test_full_disk_stops_the_deploy_before_anything_is_sent(project: Project) -> None:
    root = f"{SMALL_DISK}/app"
    project.playbook(deploy_to=root)
    (project.app / "vendor.bin").write_bytes(os.urandom(1024 * 1024))  # > the 512 KiB disk
    # Before the first deploy the root does not exist: free space comes from its parent.
    checked = project.invoke("preflight", "--env", "test")
    assert checked.returncode == 5
    assert item_line(checked.stdout, "disk").startswith("  FAIL  disk")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert "web1: only " in out.stderr and f"KiB free under {root}" in out.stderr
    assert "the release needs about" in out.stderr and "what to do: free space" in out.stderr
    assert "upload" not in out.stdout  # nothing was sent
    assert_untouched(project, root)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_dirty_unpushed_git_source_warns_and_strict_stops(project: Project) -> None:
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", "app")
    git(project.root, "commit", "-qm", "v1")
    project.playbook(source={"git": ".", "subdir": "app", "ref": "main"})
    (project.app / "app.py").write_text((project.app / "app.py").read_text() + "# wip\n")
    out = project.invoke("preflight", "--env", "test")
    assert out.returncode == 0, out.stdout + out.stderr  # a warning only
    assert item_line(out.stdout, "source").startswith("  warn  source")
    assert "1 uncommitted change(s)" in out.stdout and "M app/app.py" in out.stdout
    assert "exists only on this machine" in out.stdout
    strict = project.invoke("deploy", "--env", "test", "--strict", "--override", "notify")
    assert strict.returncode == 5, strict.stdout + strict.stderr
    assert "source (warning, strict)" in strict.stderr and "git push" in strict.stderr
    assert_untouched(project)


def test_undefined_variable_and_missing_secret_are_items_not_crashes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PF_TEST_DB_PASSWORD", raising=False)
    (project.root / "templates" / "app.env.j2").write_text(
        "DB_HOST={{ db_host }}\nDB_PASSWORD={{ secrets.DB_PASSWORD }}\n"
    )
    project.playbook(
        secrets={"DB_PASSWORD": {"env": "PF_TEST_DB_PASSWORD"}},
        templates=[
            {"src": "app.ini.j2", "dest": "config/app.ini", "mode": "0644"},
            {"src": "app.env.j2", "dest": ".env", "shared": True, "mode": "0600"},
        ],
    )
    out = project.invoke("preflight", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert item_line(out.stdout, "config").startswith("  FAIL  config")
    assert "environment variable PF_TEST_DB_PASSWORD is not set" in out.stdout
    assert "undefined variable 'db_host'" in out.stdout
    assert item_line(out.stdout, "hosts").startswith("  ok    hosts")  # still asked
    # A deploy refuses before connecting, as for any configuration error.
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 2 and "PF_TEST_DB_PASSWORD" in refused.stderr


def test_migration_script_missing_from_the_release(project: Project) -> None:
    project.playbook(migrate={"command": "python3 migrate.py && python3 tools/seed.py"})
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert "migration: migration command present in the release" in out.stderr
    assert "web1: `python3 migrate.py && python3 tools/seed.py`: tools/seed.py not in" in out.stderr
    assert "--override migration" in out.stderr
    assert_untouched(project)


def test_unhealthy_fleet_stops_the_deploy_until_overridden(project: Project) -> None:
    break_on(project, ["web2"])
    assert project.invoke("deploy", "--env", "test").returncode == 1  # first deploy: stays
    first = project.current("web2")
    assert first is not None and project.health("web2")[0] == 500
    fix(project)
    (project.app / "VERSION_NOTE").write_text("the fix\n")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert f"web2 (on {first}): expected HTTP 200" in out.stderr
    assert "--override health" in out.stderr
    assert project.current("web2") == first and not project.locked("web2")
    fixed = project.invoke("deploy", "--env", "test", "--override", "health")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "[overridden]" in item_line(fixed.stdout, "health")
    assert "WARNING: preflight: health (fail) overridden" in fixed.stdout
    assert all(project.current(h) not in (None, first) for h in HOSTS)
    record = last_record(project)
    assert record["preflight"]["overridden"] == ["health"]  # type: ignore[index]


def test_missing_rollback_target_stops_the_deploy(project: Project) -> None:
    first = project.deploy()["web1"]
    project.sh(
        "web2", f"chmod -R u+w {APP_ROOT}/releases/{first}; rm -rf {APP_ROOT}/releases/{first}"
    )
    (project.app / "VERSION_NOTE").write_text("two\n")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert f"web2: a failed deploy would return it to {first}, but releases/{first} is missing" in (
        out.stderr
    )
    assert "--override" in out.stderr and "rollback" in out.stderr
    assert project.releases("web1") == [first] and not project.locked("web1")


def test_playbook_preflight_strict_makes_a_warning_block_without_the_flag(
    project: Project,
) -> None:
    project.playbook(preflight={"strict": True})
    checked = project.invoke("preflight", "--env", "test")
    assert checked.returncode == 5, checked.stdout + checked.stderr
    notify = item_line(checked.stdout, "notify")
    assert notify.startswith("  warn  notify") and "[blocks the deploy]" in notify
    assert checked.stdout.rstrip().endswith("preflight: stopped by notify")
    out = project.invoke("deploy", "--env", "test")  # no --strict: the playbook says so
    assert out.returncode == 5, out.stdout + out.stderr
    assert "notify (warning, strict)" in out.stderr and "--override notify" in out.stderr
    assert "warnings block because of playbooks/deploy.yml:" in out.stderr
    assert ": preflight.strict" in out.stderr
    assert_untouched(project)
    allowed = project.invoke("deploy", "--env", "test", "--override", "notify")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "[overridden]" in item_line(allowed.stdout, "notify")
