"""The steps every deploy strategy is made of, shared by the rolling and canary flow
(`strategies/rolling.py`) and the blue-green flow (`strategies/bluegreen/`): check the fleet (the
checklist), migrate once (staging is `staging.py`), switch and health-check a set of
hosts, return hosts to their previous release, and finish (history, prune, unlock) after
success or failure. Each step works on a DeployState that says where every host is. Emits
events; never prints."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import DeployerError, DeployFailed, PreflightError, RemoteCommandError
from deployer.events import EventBus, Notice, RunFinished, RunStarted
from deployer.facts import HostFacts
from deployer.finishing import finish_hosts
from deployer.history import Record, releases_to_prune
from deployer.hooks import rollback_hosts, run_hooks
from deployer.locking import (
    LockOutcome,
    env_hint,
    lock_failure,
    release_locks,
    report_skipped,
)
from deployer.plan import DeployPlan, HostPlan
from deployer.preflight import (
    DISK,
    HOSTS,
    LOCK,
    Checks,
    FleetFacts,
    build_checklist,
    decide,
    local_facts,
    preflight_error,
    probe_fleet,
)
from deployer.probe import check_host
from deployer.release import Release
from deployer.remote import scripts
from deployer.remote.shell import Script
from deployer.runner import Runner, failures, operator, utc_now

UNKNOWN = "unknown (host stopped answering during the switch)"


@dataclass
class DeployState:
    """What the run knows about each host as it goes."""

    facts: dict[str, HostFacts] = field(default_factory=dict)
    on: dict[str, str | None] = field(default_factory=dict)  # host -> release it is on now
    staged: set[str] = field(default_factory=set)
    previous: dict[str, str | None] = field(default_factory=dict)  # where a revert goes
    migrated_on: str | None = None
    reverted: set[str] = field(default_factory=set)
    failed: dict[str, DeployerError] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)  # added to the run record


@contextlib.contextmanager
def opening(
    plan: DeployPlan, runner: Runner, bus: EventBus, state: DeployState, started: float
) -> Iterator[None]:
    """Around locking and checking, where nothing has changed yet: a failure ends the run
    with its message; Ctrl-C gives our locks back first."""
    try:
        yield
    except DeployerError as exc:
        finished(bus, plan, started, {}, ok=False, message=exc.message, extra=state.record)
        raise
    except KeyboardInterrupt:
        release_locks(runner, [h for h in plan.hosts if h.name in state.facts], plan.run_id)
        finished(bus, plan, started, {}, ok=False, message="interrupted", extra=state.record)
        raise


def failed(
    plan: DeployPlan,
    state: DeployState,
    bus: EventBus,
    started: float,
    exc: DeployerError,
    text: str,
) -> DeployFailed:
    """A flow's failure, for every strategy: `exc` as a DeployFailed (`text` when it was not
    one yet) carrying where each host is now, announced as the run's last event."""
    error = (
        exc
        if isinstance(exc, DeployFailed)
        else DeployFailed(text, failures=[exc], hint=recovery_hint(plan))
    )
    error.releases = dict(state.on)
    finished(
        bus, plan, started, dict(state.on), ok=False, message=error.message, extra=state.record
    )
    return error


def finished(
    bus: EventBus,
    plan: DeployPlan,
    started: float,
    releases: dict[str, str | None],
    *,
    ok: bool,
    message: str = "",
    extra: dict[str, Any] | None = None,
    action: str = "deploy",
) -> None:
    """The run's last event, for every flow (deploy, rollback; any strategy)."""
    bus.emit(
        RunFinished(
            run_id=plan.run_id,
            action=action,
            ok=ok,
            duration=time.monotonic() - started,
            releases=releases,
            message=message,
            extra=dict(extra or {}),
        )
    )


def run_preflight(
    plan: DeployPlan,
    release: Release,
    runner: Runner,
    bus: EventBus,
    state: DeployState,
    locked: LockOutcome,
    checks: Checks | None,
) -> None:
    """The checklist, judged from what the lock step returned plus one health probe per host
    (no other round trip). Stops the run, releasing our locks, when an item blocks."""
    hosts = plan.hosts
    critical_only = checks is None
    if checks is None:
        local = local_facts(plan, release, plan.playbook, env=plan.env, source="", notify_set=True)
        checks = Checks(local)
    stopped = bool(locked.problems)
    probe = not (stopped or critical_only)
    fleet = FleetFacts(
        hosts=tuple(hp.name for hp in hosts),
        roots={hp.name: hp.layout.root for hp in hosts},
        facts=locked.facts,
        problems=locked.problems,
        skipped=locked.skipped,
        probes=probe_fleet(runner, hosts, plan.playbook.health, locked.facts) if probe else {},
        probed=probe,
        locking=True,
    )
    items = build_checklist(checks.local, fleet)
    if critical_only:
        items = tuple(item for item in items if item.name in (HOSTS, LOCK, DISK))
    checklist = decide(items, checks.policy)
    bus.emit(checklist)
    state.record["preflight"] = {
        "checks": {item.name: item.status for item in items},
        "blocking": list(checklist.blocking),
        "overridden": list(checklist.overridden),
    }
    if stopped or checklist.blocking:
        release_locks(runner, [hp for hp in hosts if hp.name in locked.facts], plan.run_id)
        if stopped:  # the lock's own errors: who holds it (exit 4), or which hosts (exit 5)
            raise lock_failure(locked.problems, env_hint(hosts))
        raise preflight_error(checklist, plan.env, checks.policy.strict_by)
    report_skipped(runner, locked)
    for item in checklist.items:
        if item.name in checklist.overridden:
            bus.emit(
                Notice(
                    level="warning",
                    text=f"preflight: {item.name} ({item.status}) overridden: "
                    + item.detail.replace("\n", "; "),
                )
            )


def without_skipped(plan: DeployPlan, state: DeployState, runner: Runner) -> DeployPlan:
    skipped = {h.name for h in plan.hosts} - set(state.facts)
    if plan.migrate_host in skipped:
        release_locks(runner, [h for h in plan.hosts if h.name in state.facts], plan.run_id)
        raise PreflightError(
            f"the migration host {plan.migrate_host} is unreachable; nothing was changed",
            hint="bring it back, or point migrate.run_on at a reachable host",
        )
    return plan.without(skipped)


def recovery_hint(plan: DeployPlan) -> str:
    return (
        f"inspect with `invoke status --env {plan.env}`; fix and re-run `invoke deploy "
        f"--env {plan.env}`"
    )


def migrate(plan: DeployPlan, runner: Runner, state: DeployState, bus: EventBus) -> None:
    if plan.migrate_host is None:
        return
    hp = plan.host(plan.migrate_host)
    assert hp.migrate is not None
    run_hooks(runner, plan, "before_migrate", [hp])
    # Run through `each` so that Ctrl-C waits for a migration in flight instead of walking
    # away from it (a half-applied migration is worse than a late stop).
    script = scripts.migrate(hp.layout, plan.release_id, hp.migrate, hp.env)
    state.migrated_on = hp.name  # from here on the database may have changed
    outcome = runner.each([hp], lambda h: runner.step(h.host, script))[hp.name]
    if isinstance(outcome, DeployerError):
        raise DeployFailed(
            f"migration failed on {hp.name}; nothing was switched",
            failures=[outcome],
            hint=recovery_hint(plan),
        )
    run_hooks(runner, plan, "after_migrate", [hp])


def expects_version(plan: DeployPlan) -> bool:
    http = plan.playbook.health.http
    return bool(http and http.expect_version)


def switch_and_check(
    plan: DeployPlan,
    runner: Runner,
    state: DeployState,
    batch: Sequence[HostPlan],
    release_id: str,
    expect_version: str | None,
) -> dict[str, DeployerError]:
    """Switch every host of the batch to `release_id`, restart, health-check. Returns the
    hosts that failed, with why."""

    def one(hp: HostPlan) -> None:
        # A host already on the release (a resumed run) is only checked, not switched again.
        if state.on.get(hp.name) != release_id:
            _switch(plan, runner, state, hp, release_id)
        check_host(runner, plan.playbook.health, hp, expect_version)

    return failures(runner.each(batch, one))


def _switch(
    plan: DeployPlan, runner: Runner, state: DeployState, hp: HostPlan, release_id: str
) -> None:
    """Switch one host and record where it is now, as far as we can know."""
    env = {**hp.env, "RELEASE_ID": release_id}
    try:
        runner.step(
            hp.host,
            scripts.switch(hp.layout, release_id, plan.run_id, restart=hp.restart, env=env),
        )
    except RemoteCommandError as exc:
        # The rename is the switch sub-step's last command: a later failure means it happened.
        if exc.step != "switch":
            state.on[hp.name] = release_id
        raise
    except DeployerError:
        state.on[hp.name] = UNKNOWN
        raise
    state.on[hp.name] = release_id


def revert(
    plan: DeployPlan, runner: Runner, state: DeployState, bus: EventBus, hosts: Sequence[HostPlan]
) -> None:
    """Return hosts to the release they ran before this deploy, restart and check them."""
    if state.migrated_on:
        bus.emit(
            Notice(
                level="warning",
                text=(
                    f"migrations ran on {state.migrated_on} and were NOT rolled back: the database"
                    f" schema is {plan.release_id}'s while code returns to the previous release"
                ),
            )
        )
    movable = []
    for hp in hosts:
        previous = state.previous[hp.name]
        if previous is None:
            bus.emit(
                Notice(
                    level="warning",
                    text=(
                        f"{hp.name}: no previous release to return to (first deploy);"
                        f" it stays on {plan.release_id}"
                    ),
                )
            )
        elif state.on.get(hp.name) != previous:
            movable.append(hp)
    if not movable:
        return
    # Hooks here are best effort: nothing may keep a host from a complete release.
    hooked = rollback_hosts(
        [hp for hp in plan.hosts if hp.name in {m.name for m in movable}],  # inventory order
        to={hp.name: state.previous[hp.name] or "" for hp in movable},
        came_from={hp.name: plan.release_id for hp in movable},
    )
    run_hooks(runner, plan, "before_rollback", hooked, best_effort=True)

    def back(hp: HostPlan) -> None:
        previous = state.previous[hp.name]
        assert previous is not None
        _switch(plan, runner, state, hp, previous)
        state.reverted.add(hp.name)
        check_host(runner, plan.playbook.health, hp, previous if expects_version(plan) else None)

    for name, error in failures(runner.each(movable, back)).items():
        bus.emit(Notice(level="error", text=f"{name}: returning to the previous release: {error}"))
    run_hooks(runner, plan, "after_rollback", hooked, best_effort=True)


def finish_ok(plan: DeployPlan, runner: Runner, state: DeployState, bus: EventBus) -> None:
    """History, lock, then pruning on every host once the rollout has decided where each host
    is. Never raises: cleanup is best effort (`deployer.finishing`)."""
    keep = plan.playbook.keep_releases

    def script(hp: HostPlan) -> Script:
        facts = state.facts[hp.name]
        ok = state.on.get(hp.name) == plan.release_id and hp.name not in state.failed
        record = deploy_record(plan, state.previous[hp.name], "success" if ok else "rolled_back")
        history = [*facts.history, record]
        present = sorted({*facts.releases, plan.release_id})
        prune = releases_to_prune(present, history, keep=keep, current=state.on.get(hp.name))
        return scripts.finish(
            hp.layout,
            plan.run_id,
            history=[record.to_json()],
            prune=prune,
            remove_staged=[] if ok else [plan.release_id],
            sudo=plan.playbook.cleanup_sudo,
        )

    report = finish_hosts(runner, bus, plan.env, plan.hosts, script)
    state.record.update(report.record())


def finish_failed(
    plan: DeployPlan,
    runner: Runner,
    state: DeployState,
    bus: EventBus,
    *,
    interrupted: bool = False,
) -> None:
    """Record the failure, remove the staged release where it is not live, release the lock."""

    def script(hp: HostPlan) -> Script:
        on_new = state.on.get(hp.name) == plan.release_id
        result = (
            "interrupted"
            if interrupted
            else ("rolled_back" if hp.name in state.reverted else "failed")
        )
        record = deploy_record(plan, state.previous[hp.name], result)
        return scripts.finish(
            hp.layout,
            plan.run_id,
            history=[record.to_json()],
            prune=[],
            remove_staged=[] if on_new else [plan.release_id],
            sudo=plan.playbook.cleanup_sudo,
        )

    report = finish_hosts(runner, bus, plan.env, plan.hosts, script)
    state.record.update(report.record())


def deploy_record(plan: DeployPlan, previous: str | None, result: str) -> Record:
    now = utc_now()
    return Record(
        time=now,
        user=operator(),
        release=plan.release_id,
        action="deploy",
        result=result,
        run_id=plan.run_id,
        previous=previous,
        started=plan.started,
        ended=now,
        committed=plan.committed,
    )


def deploy_started(
    plan: DeployPlan, release: Release, batches: Sequence[Sequence[str]] = ()
) -> RunStarted:
    """The RunStarted event of a deploy (rolling, canary or blue-green) of `release`."""
    return RunStarted(
        run_id=plan.run_id,
        action="deploy",
        env=plan.env,
        release=plan.release_id,
        hosts=[h.name for h in plan.hosts],
        batches=batches,
        source=release.source or release.commit or "",
        built_at=release.mtime,
    )
