"""The pre-deployment checklist builder: each item passing and failing from fake facts, what
blocks and what an override lets through, and the deploy flow stopping on it (recording
transport, no hosts). Real hosts: tests/integration/test_preflight.py."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from deployer import api
from deployer import preflight as pf
from deployer.api.checklist import checklist_policy
from deployer.config import parse_inventory_yaml, parse_playbook
from deployer.config.model import Host
from deployer.errors import ConfigError, HostKeyError, LockHeldError, PreflightError, TransportError
from deployer.events import CheckItem, Checklist, EventBus
from deployer.facts import HostFacts, LockHolder
from deployer.health import Probe
from deployer.history import Record
from deployer.release import build_release
from deployer.remote.recording import RecordingTransport, default_responder, prepare_output
from deployer.remote.shell import Script
from deployer.remote.transport import Result
from deployer.reporters import TerminalReporter
from deployer.runner import Runner
from deployer.strategies.rolling import deploy
from tests.unit.planning import plan_for

NEW = "20260301T000000Z-1111111"
OLD = "20260201T000000Z-0000000"
OLDER = "20260101T000000Z-aaaaaaa"
HOSTS = ("web1", "web2")


def ok_record(release: str) -> Record:
    return Record("t", "u", release, "deploy", "success", "r")


def on_old(**changes: object) -> HostFacts:
    """A host running OLD, deployed after OLDER, with plenty of room."""
    base: dict[str, object] = dict(
        current=OLD,
        releases=(OLDER, OLD),
        history=(ok_record(OLDER), ok_record(OLD)),
        free_kb=10_000,
        lock_acquired=True,
    )
    return HostFacts(**{**base, **changes})


def local(**changes: object) -> pf.LocalFacts:
    base: dict[str, object] = dict(
        env="prod",
        release_id=NEW,
        needed_kb=100,
        release_paths=frozenset({"app.py", "migrate.py", "bin", "bin/migrate"}),
        migrate=("web1", "python3 migrate.py"),
        rendered_hosts=2,
        source="app",
        notify_env="HOOK_URL",
        notify_set=True,
    )
    return pf.LocalFacts(**{**base, **changes})


def fleet(facts: dict[str, HostFacts] | None = None, **changes: object) -> pf.FleetFacts:
    facts = {h: on_old() for h in HOSTS} if facts is None else facts
    base: dict[str, object] = dict(
        hosts=HOSTS,
        roots={h: "/srv/app" for h in HOSTS},
        facts=facts,
        probes={h: Probe(True, "HTTP/1.0 200 OK") for h in facts},
        locking=True,
    )
    return pf.FleetFacts(**{**base, **changes})


def items(lf: pf.LocalFacts | None = None, ff: pf.FleetFacts | None = None) -> dict[str, CheckItem]:
    built = pf.build_checklist(lf or local(), ff or fleet())
    return {i.name: i for i in built}


def status(name: str, lf: pf.LocalFacts | None = None, ff: pf.FleetFacts | None = None) -> str:
    return items(lf, ff)[name].status


# ------------------------------------------------------------------ every item, pass and fail


def test_a_healthy_fleet_passes_every_item_in_order() -> None:
    built = pf.build_checklist(local(), fleet())
    assert [i.name for i in built] == list(pf.ITEMS)
    assert {i.name: i.status for i in built} == {
        **dict.fromkeys(pf.ITEMS, "pass"),
        "source": "skip",  # a directory source
        "resources": "skip",  # these facts carry no resource report
    }
    assert all(i.remedy == "" for i in built)


def test_hosts_unreachable_or_unknown_key_fails_critically_with_what_to_do() -> None:
    problems = {
        "web2": HostKeyError("web2", "unknown host key SHA256:abc", hint="--accept-new-host-keys"),
    }
    item = items(ff=fleet({"web1": on_old()}, problems=problems))["hosts"]
    assert item.status == "fail" and item.critical
    assert "web2: unknown host key SHA256:abc" in item.detail
    assert item.remedy == "--accept-new-host-keys"
    down = {"web2": TransportError("web2", "cannot connect: refused")}
    item = items(ff=fleet({"web1": on_old()}, problems=down))["hosts"]
    assert item.status == "fail" and "--limit '!NAME'" in item.remedy


def test_hosts_left_out_with_skip_unreachable_is_a_warning() -> None:
    skipped = {"web2": TransportError("web2", "cannot connect")}
    item = items(ff=fleet({"web1": on_old()}, skipped=skipped))["hosts"]
    assert item.status == "warn"
    assert "--resume" in item.remedy


def test_lock_held_fails_in_a_deploy_and_read_only() -> None:
    held = {"web2": LockHeldError("web2: deploy lock at /srv/app/.deploy/lock is held by bob")}
    item = items(ff=fleet({"web1": on_old()}, problems=held))["lock"]
    assert item.status == "fail" and "held by bob" in item.detail
    assert "invoke unlock --env prod" in item.remedy
    assert status("hosts", ff=fleet({"web1": on_old()}, problems=held)) == "pass"
    holder = LockHolder({"user": "ann", "from": "ci"}, 30)
    read_only = fleet({"web1": on_old(lock_acquired=False, lock_holder=holder)}, locking=False)
    item = items(ff=read_only)["lock"]
    assert item.status == "fail" and "ann@ci" in item.detail
    assert status("lock", ff=fleet(locking=False)) == "pass"


def test_disk_compares_free_space_with_the_release() -> None:
    small = fleet({"web1": on_old(), "web2": on_old(free_kb=50)})
    item = items(ff=small)["disk"]
    assert item.status == "fail" and item.critical
    assert "web2: only 50 KiB free under /srv/app" in item.detail
    assert "about 100 KiB" in item.detail
    # A release already staged there (a resumed run) needs no room.
    resumed = fleet({"web1": on_old(), "web2": on_old(free_kb=50, releases=(OLD, NEW))})
    assert status("disk", ff=resumed) == "pass"
    unknown = fleet({"web1": on_old(), "web2": on_old(free_kb=None)})
    assert status("disk", ff=unknown) == "warn"


def test_config_errors_fail_critically() -> None:
    errors = ("playbooks/deploy.yml:3: deploy_to: undefined variable 'app_root'",)
    item = items(local(config_errors=errors))["config"]
    assert item.status == "fail" and item.critical
    assert "app_root" in item.detail


def test_source_dirty_or_unpushed_warns_and_directory_skips() -> None:
    clean = pf.GitState("repo", "c" * 40, remote_branches=("origin/main",))
    assert status("source", local(source=clean)) == "pass"
    dirty = pf.GitState("repo", "c" * 40, dirty=(" M app.py",), remote_branches=("origin/main",))
    item = items(local(source=dirty))["source"]
    assert item.status == "warn" and " M app.py" in item.detail
    unpushed = pf.GitState("repo", "c" * 40)
    assert "not pushed" in items(local(source=unpushed))["source"].detail
    lonely = pf.GitState("repo", "c" * 40, has_remote=False)
    assert "no remote" in items(local(source=lonely))["source"].detail
    assert status("source", local(source="app")) == "skip"


def test_migration_command_must_name_files_of_the_release() -> None:
    assert status("migration", local(migrate=("web1", "./bin/migrate --all"))) == "pass"
    item = items(local(migrate=("web1", "python3 manage.py migrate")))["migration"]
    assert item.status == "fail" and not item.critical
    assert "manage.py not in release" in item.detail
    assert status("migration", local(migrate=("web1", "rake db:migrate"))) == "skip"
    assert status("migration", local(migrate=None)) == "skip"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("python3 migrate.py", ["migrate.py"]),
        ("./bin/migrate && echo done", ["bin/migrate"]),
        ("touch /tmp/x; sleep 2; python3 migrate.py", ["migrate.py"]),
        ("cd db && ./apply.sh up", ["db/apply.sh"]),
        ("cd /opt/x && ./apply.sh", []),
        ("sqlite3 $DB < migrations/001.sql", ["migrations/001.sql"]),
        ("bundle exec rake db:migrate RAILS_ENV=production", []),
        ("psql --file=schema.sql ../up.sql", []),
    ],
)
def test_path_words(command: str, words: list[str]) -> None:
    assert pf.path_words(command) == words


def test_health_fails_on_an_unhealthy_host_and_skips_a_first_deploy() -> None:
    probes = {"web1": Probe(True, "200"), "web2": Probe(False, "expected HTTP 200, got 500")}
    item = items(ff=fleet(probes=probes))["health"]
    assert item.status == "fail" and not item.critical
    assert f"web2 (on {OLD}): expected HTTP 200, got 500" in item.detail
    assert "--override health" in item.remedy
    first = {h: HostFacts(current=None, releases=(), free_kb=10_000) for h in HOSTS}
    assert status("health", ff=fleet(first, probes={})) == "skip"
    assert status("health", local(health_configured=False)) == "skip"


def test_rollback_target_must_be_on_every_host() -> None:
    gone = fleet({"web1": on_old(), "web2": on_old(releases=(OLDER,))})
    item = items(ff=gone)["rollback"]
    assert item.status == "fail" and not item.critical
    assert f"web2: a failed deploy would return it to {OLD}" in item.detail
    first = {h: HostFacts(current=None, releases=(), free_kb=10_000) for h in HOSTS}
    assert status("rollback", ff=fleet(first)) == "skip"
    # Resuming: a host already on NEW returns to the release before it in its history.
    resumed = on_old(current=NEW, releases=(OLD, NEW))
    assert status("rollback", ff=fleet({"web1": resumed, "web2": on_old()})) == "pass"
    resumed_gone = on_old(current=NEW, releases=(NEW,))
    assert status("rollback", ff=fleet({"web1": resumed_gone, "web2": on_old()})) == "fail"


def test_notifications_warn_when_absent_and_fail_when_their_variable_is_unset() -> None:
    item = items(local(notify_env=None))["notify"]
    assert item.status == "warn" and "notify: {webhook:" in item.remedy
    item = items(local(notify_set=False))["notify"]
    assert item.status == "fail" and "export HOOK_URL" in item.remedy


def test_without_fleet_facts_the_host_items_are_skipped() -> None:
    built = {i.name: i.status for i in pf.build_checklist(local(planned=False), None)}
    assert [built[n] for n in ("hosts", "lock", "disk", "health", "rollback")] == ["skip"] * 5


# ------------------------------------------------------------------ what blocks


def failing() -> tuple[CheckItem, ...]:
    return pf.build_checklist(
        local(notify_env=None, migrate=("web1", "./missing")),
        fleet({"web1": on_old(), "web2": on_old(free_kb=1)}),
    )


def test_critical_and_non_critical_failures_block_warnings_do_not() -> None:
    checklist = pf.decide(failing())
    assert checklist.blocking == ("disk", "migration")
    assert checklist.overridden == ()


def test_override_lets_non_critical_failures_through_never_critical_ones() -> None:
    checklist = pf.decide(failing(), pf.Policy(overrides=frozenset({"migration"})))
    assert checklist.blocking == ("disk",) and checklist.overridden == ("migration",)
    everything = pf.decide(failing(), pf.Policy(overrides=frozenset({"all-warnings"})))
    assert everything.blocking == ("disk",)


def test_strict_makes_warnings_block_unless_overridden() -> None:
    built = pf.build_checklist(local(notify_env=None), fleet())
    assert pf.decide(built, pf.Policy(strict=True)).blocking == ("notify",)
    policy = pf.Policy(strict=True, overrides=frozenset({"notify"}))
    assert pf.decide(built, policy).overridden == ("notify",)


def test_the_error_says_what_made_a_warning_block() -> None:
    built = pf.build_checklist(local(notify_env=None), fleet())
    checklist = pf.decide(built, pf.Policy(strict=True))
    where = "playbooks/deploy.yml:9: preflight.strict"
    text = str(pf.preflight_error(checklist, "prod", where))
    assert "notify (warning, strict): notifications configured" in text
    assert f"warnings block because of {where}" in text
    assert "because of" not in str(pf.preflight_error(pf.decide(failing()), "prod", where))


def loaded(tmp_path: Path, extra: str = "") -> api.Loaded:
    inventory = parse_inventory_yaml(INVENTORY, "inv.yml", "test")
    playbook = parse_playbook(PLAYBOOK + extra, "playbooks/deploy.yml")
    return api.Loaded(api.Project(tmp_path), "test", inventory, playbook, inventory.hosts)


@pytest.mark.parametrize(
    ("key", "flag", "strict", "by"),
    [
        (None, False, False, ""),
        (None, True, True, "--strict"),
        ("false", True, True, "--strict"),
        ("true", False, True, "playbooks/deploy.yml:7: preflight.strict"),  # PLAYBOOK has 6 lines
        ("true", True, True, "--strict"),
    ],
)
def test_the_playbook_strict_key_ors_with_the_flag(
    tmp_path: Path, key: str | None, flag: bool, strict: bool, by: str
) -> None:
    extra = f"preflight:\n  strict: {key}\n" if key else ""
    policy = checklist_policy(loaded(tmp_path, extra), "notify", flag)
    assert (policy.strict, policy.strict_by) == (strict, by)
    assert policy.overrides == {"notify"} and not policy.lenient


def test_resuming_only_critical_failures_block() -> None:
    assert pf.decide(failing(), pf.Policy(lenient=True)).blocking == ("disk",)


def test_override_names_are_checked() -> None:
    assert pf.parse_overrides("health, rollback") == {"health", "rollback"}
    assert pf.parse_overrides(None) == frozenset()
    with pytest.raises(ConfigError, match="unknown check 'helth'"):
        pf.parse_overrides("helth")
    with pytest.raises(ConfigError, match="'disk' is a critical check"):
        pf.parse_overrides("disk")


def test_the_error_names_host_item_and_what_to_do() -> None:
    error = pf.preflight_error(pf.decide(failing()), "prod")
    text = str(error)
    assert error.exit_code == 5
    assert "disk (critical): enough free disk" in text and "web2: only 1 KiB free" in text
    assert "what to do: free space" in text
    assert "--override migration" in text and "critical checks cannot be overridden" in text


def test_terminal_prints_a_mark_per_item_and_the_verdict() -> None:
    out = io.StringIO()
    TerminalReporter(out)(pf.decide(failing()))
    text = out.getvalue()
    assert "  FAIL  disk       enough free disk for the release [critical, blocks" in text
    assert "  warn  notify" in text and "what to do: add notify:" in text
    assert text.rstrip().endswith("preflight: stopped by disk (critical), migration")


# ------------------------------------------------------------------ gathering, locally


def test_git_state_sees_dirty_files_and_unpushed_commits(tmp_path: Path) -> None:
    def git(*args: str, cwd: Path = tmp_path / "repo") -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
        ).stdout

    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (repo / "app.py").write_text("x\n")
    git("add", ".")
    git("commit", "-qm", "one")
    commit = git("rev-parse", "HEAD").strip()
    state = pf.git_state(repo, commit)
    assert state.dirty == () and not state.has_remote
    git("clone", "-q", "--bare", str(repo), str(tmp_path / "origin.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "origin.git"))
    git("fetch", "-q", "origin")
    (repo / "app.py").write_text("y\n")
    (repo / ".deploy-runs").mkdir()
    (repo / ".deploy-runs" / "r.json").write_text("{}")
    state = pf.git_state(repo, commit, exclude=[repo / ".deploy-runs"])
    assert state.dirty == (" M app.py",)  # the run records are not "changes"
    assert state.remote_branches == ("origin/main",)
    git("commit", "-qam", "two")
    later = pf.git_state(repo, git("rev-parse", "HEAD").strip())
    assert later.remote_branches == () and later.has_remote


# ------------------------------------------------------------------ the deploy flow stops


INVENTORY = """
all:
  hosts:
    h1: {ansible_host: 127.0.0.2}
    h2: {ansible_host: 127.0.0.3}
"""

PLAYBOOK = """
application: app
deploy_to: /srv/app
source: {path: src}
migrate: {command: python3 missing.py}
"""


def test_a_blocking_checklist_stops_the_deploy_before_staging(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('hi')\n")
    release = build_release(source_dir=src, work_dir=tmp_path / "build")
    plan, _ = plan_for(INVENTORY, PLAYBOOK, tmp_path, release.id)
    playbook = plan.playbook
    checks = pf.Checks(
        pf.local_facts(plan, release, playbook, env="test", source="src", notify_set=False)
    )

    def responder(host: Host, script: Script) -> Result:
        if script.step == "prepare" and host.name == "h2":
            return Result(0, prepare_output(free_kb=1))
        return default_responder(host, script)

    transport = RecordingTransport(responder=responder)
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    runner = Runner(transport, bus, parallel=2)
    try:
        with pytest.raises(PreflightError) as err:
            deploy(plan, release, runner, bus, checks=checks)
    finally:
        runner.close()
    assert "h2: only 1 KiB free" in str(err.value) and "missing.py" in str(err.value)
    assert [s.step for _, s in transport.calls if s.step not in ("prepare", "unlock")] == []
    assert sorted(h for h, s in transport.calls if s.step == "unlock") == ["h1", "h2"]
    checklist = next(e for e in events if isinstance(e, Checklist))
    assert checklist.blocking == ("disk", "migration")


def test_a_plain_http_webhook_url_is_a_warning() -> None:
    """Issue 14: an http:// webhook sends its token and every message unencrypted."""
    item = items(local(notify_plain_http=True))["notify"]
    assert item.status == "warn" and "plain http:// URL" in item.detail
    assert "https://" in item.remedy
    assert items(local())["notify"].status == "pass"
