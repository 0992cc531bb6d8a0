"""The rolling and canary deploy flow: lock → stage everywhere → migrate once → switch in
health-checked batches (a canary bakes between steps) → finish (history, prune, unlock); on
failure, revert what was switched and clean up so every host stays on a complete release.
The steps themselves live in `phases.py` and `staging.py`, shared with blue-green. Emits
events; never prints."""

from __future__ import annotations

import time

from deployer import phases, staging
from deployer.errors import DeployerError, DeployFailed
from deployer.events import BatchFinished, BatchStarted, EventBus, Notice
from deployer.history import rollback_target
from deployer.hooks import run_hooks
from deployer.locking import lock_fleet
from deployer.phases import UNKNOWN, DeployState, opening
from deployer.plan import DeployPlan, HostPlan, over_budget
from deployer.preflight import Checks
from deployer.release import Release
from deployer.runner import Runner
from deployer.strategies.drain import DrainPlan
from deployer.strategies.drainer import Drainer, DrainRefused


def deploy(
    plan: DeployPlan,
    release: Release,
    runner: Runner,
    bus: EventBus,
    *,
    skip_unreachable: bool = False,
    resume_from: str | None = None,
    checks: Checks | None = None,
    drain: DrainPlan | None = None,
) -> dict[str, str | None]:
    """Deploy `release` per `plan`. Returns host -> release on success; raises DeployFailed
    (with every host's release) when the rollout stopped or any host failed. With `drain`,
    each batch leaves the load balancers while it restarts (`plan` holds the app hosts).

    The pre-deployment checklist runs once the lock is taken, from the facts that step
    returned; `checks` None runs only its critical fleet items (hosts, lock, disk): the
    API always passes the whole checklist."""
    started = time.monotonic()
    state = DeployState()
    hosts = list(plan.hosts)
    bus.emit(phases.deploy_started(plan, release, plan.batches))
    with opening(plan, runner, bus, state, started):
        locked = lock_fleet(
            runner,
            hosts,
            plan.run_id,
            "deploy",
            plan.release_id,
            skip_unreachable=skip_unreachable,
            takeover=resume_from,
            baseline=True,
            keep_releases=plan.playbook.keep_releases,
        )
        state.facts = locked.facts
        phases.run_preflight(plan, release, runner, bus, state, locked, checks)
        if len(state.facts) < len(hosts):
            plan = phases.without_skipped(plan, state, runner)
            hosts = list(plan.hosts)
    state.on = {name: f.current for name, f in state.facts.items()}
    # A host already on this release (resuming) reverts to the last one its history trusts.
    state.previous = {
        name: rollback_target(f.history, f.current) if f.current == plan.release_id else f.current
        for name, f in state.facts.items()
    }
    try:
        run_hooks(runner, plan, "before_stage", hosts)
        staging.stage(plan, release, runner, state, bus)
        run_hooks(runner, plan, "after_stage", hosts)
        phases.migrate(plan, runner, state, bus)
        switched_at = time.time()  # the watch's baseline ends here
        _rollout(plan, runner, state, bus, Drainer(drain, runner, bus, plan.run_id))
        _watch(plan, runner, state, bus, switched_at)
    except KeyboardInterrupt:
        if state.migrated_on:
            bus.emit(
                Notice(
                    level="warning",
                    text=f"migrations ran on {state.migrated_on} before the interrupt;"
                    " the database was not rolled back",
                )
            )
        phases.finish_failed(plan, runner, state, bus, interrupted=True)
        phases.finished(
            bus, plan, started, dict(state.on), ok=False, message="interrupted", extra=state.record
        )
        raise
    except DeployerError as exc:
        phases.finish_failed(plan, runner, state, bus)
        error = phases.failed(
            plan,
            state,
            bus,
            started,
            exc,
            f"deploy of {plan.release_id} to {plan.env} failed; nothing is left half-done",
        )
        run_hooks(runner, plan, "on_failure", hosts, best_effort=True)
        raise error from None
    try:
        phases.finish_ok(plan, runner, state, bus)
    except KeyboardInterrupt:
        # The finishes in flight were allowed to complete (`Runner.each(shield=True)`).
        phases.finished(
            bus,
            plan,
            started,
            dict(state.on),
            ok=not state.failed,
            message="interrupted while finishing, after the rollout",
            extra=state.record,
        )
        raise
    ok = not state.failed
    phases.finished(bus, plan, started, dict(state.on), ok=ok, extra=state.record)
    if not ok:
        failed = DeployFailed(
            f"deploy of {plan.release_id} finished, but {len(state.failed)} host(s) failed within"
            " the failure budget and were returned to their previous release",
            failures=list(state.failed.values()),
            releases=state.on,
            hint=phases.recovery_hint(plan),
        )
        failed.exit_code = 3
        raise failed
    return dict(state.on)


def _rollout(
    plan: DeployPlan, runner: Runner, state: DeployState, bus: EventBus, drainer: Drainer
) -> None:
    strategy = plan.playbook.strategy
    expect = plan.release_id if phases.expects_version(plan) else None
    done: list[HostPlan] = []
    for index, names in enumerate(plan.batches, 1):
        batch = [plan.host(n) for n in names]
        bus.emit(BatchStarted(index=index, total=len(plan.batches), hosts=names))
        earlier = done if strategy.rollback == "all" else []
        _switch_hook(
            plan, runner, state, bus, "before_switch", batch, index, revert=earlier, drainer=drainer
        )
        try:
            # Out of the load balancers (with strategy.drain) until healthy or reverted.
            with drainer.out_of_service(names):
                bad = phases.switch_and_check(plan, runner, state, batch, plan.release_id, expect)
                stop = over_budget(len(batch), len(bad), strategy.max_fail_percentage)
                bus.emit(
                    BatchFinished(
                        index=index,
                        total=len(plan.batches),
                        healthy=[h.name for h in batch if h.name not in bad],
                        failed=sorted(bad),
                        within_budget=not stop,
                    )
                )
                if stop:
                    revert = batch + (done if strategy.rollback == "all" else [])
                    _revert(plan, runner, state, bus, revert, drainer)
                    raise DeployFailed(
                        f"batch {index}/{len(plan.batches)} unhealthy ({len(bad)} of"
                        f" {len(batch)} hosts failed, max_fail_percentage"
                        f" {strategy.max_fail_percentage:g}); rolled back {len(revert)} host(s)",
                        failures=list(bad.values()),
                        hint=phases.recovery_hint(plan),
                    )
                if bad:
                    state.failed.update(bad)
                    phases.revert(plan, runner, state, bus, [h for h in batch if h.name in bad])
        except DrainRefused:
            # Nothing of this batch restarted; earlier batches go back as for a failure.
            _revert(plan, runner, state, bus, earlier, drainer)
            raise
        healthy = [h for h in batch if h.name not in bad]
        _switch_hook(
            plan,
            runner,
            state,
            bus,
            "after_switch",
            healthy,
            index,
            revert=healthy + earlier,
            drainer=drainer,
        )
        done.extend(healthy)
        if strategy.canary and index < len(plan.batches):
            _bake(plan, runner, state, bus, index, done, drainer)
        if strategy.pause and index < len(plan.batches):
            bus.emit(
                Notice(level="info", text=f"pausing {strategy.pause:g}s before the next batch")
            )
            time.sleep(strategy.pause)


def _watch(
    plan: DeployPlan, runner: Runner, state: DeployState, bus: EventBus, switched_at: float
) -> None:
    """The post-deploy watch (playbook `watch:`), lock still held: a failing rule returns
    every host on the new release to its previous one, as an unhealthy batch does."""
    watch = plan.playbook.watch
    live = [hp for hp in plan.hosts if state.on.get(hp.name) == plan.release_id]
    if watch is None or not live:
        return
    from deployer.analysis.watch import watch_fleet  # only with `watch:` (Prometheus)

    result = watch_fleet(
        plan,
        runner,
        watch,
        hosts=live,
        switched_at=switched_at,
        previous=sorted({p for hp in live if (p := state.previous.get(hp.name))}),
    )
    if result.ok:
        return
    phases.revert(plan, runner, state, bus, live)
    raise DeployFailed(
        f"{result.reason}; rolled back {len(live)} host(s) to their previous release",
        hint=f"see the watch above (and in the run record); fix the release and re-run"
        f" `invoke deploy --env {plan.env}`",
    )


def _switch_hook(
    plan: DeployPlan,
    runner: Runner,
    state: DeployState,
    bus: EventBus,
    point: str,
    hosts: list[HostPlan],
    index: int,
    *,
    revert: list[HostPlan],
    drainer: Drainer,
) -> None:
    """A batch's before_switch/after_switch hooks. A failure counts as the batch failing:
    the hosts switched so far go back as `rollback` says, as for an unhealthy batch, so a
    failed deploy never leaves the fleet split between two releases."""
    try:
        run_hooks(runner, plan, point, hosts)
    except DeployerError as exc:
        _revert(plan, runner, state, bus, revert, drainer)
        raise DeployFailed(
            f"hook {point} failed in batch {index}/{len(plan.batches)};"
            f" rolled back {len(revert)} host(s)",
            failures=[exc],
            hint=phases.recovery_hint(plan),
        ) from None


def _bake(
    plan: DeployPlan,
    runner: Runner,
    state: DeployState,
    bus: EventBus,
    index: int,
    done: list[HostPlan],
    drainer: Drainer,
) -> None:
    """Let canary step `index` bake while its numbers are compared with the hosts still on
    the old release; promote, or return every switched host to where it was."""
    canary = plan.playbook.strategy.canary
    assert canary is not None
    waiting = [n for batch in plan.batches[index:] for n in batch]
    baseline = [
        plan.host(n) for n in waiting if state.on.get(n) not in (None, plan.release_id, UNKNOWN)
    ]
    if not baseline:
        bus.emit(
            Notice(
                level="warning",
                text="canary: no host left on an earlier release to compare with;"
                " only absolute rules (max_error_rate) can stop this step",
            )
        )
    bus.emit(
        Notice(
            level="info",
            text=f"canary step {index}/{len(plan.batches)}: baking {canary.bake:g}s"
            f" ({len(done)} host(s) on {plan.release_id})",
        )
    )
    from deployer.analysis.step import analyze_step  # only with canary analysis (Prometheus)

    verdicts = analyze_step(
        plan,
        runner,
        canary.analysis,
        step=index,
        steps=len(plan.batches),
        seconds=canary.bake,
        canary=done,
        baseline=baseline,
        previous=sorted({p for h in done if (p := state.previous.get(h.name))}),
    )
    if runner.cancelled.is_set():
        raise KeyboardInterrupt
    failed = [v for v in verdicts if not v.promote]
    if not failed:
        return
    _revert(plan, runner, state, bus, list(done), drainer)
    reasons = "; ".join(
        v.reason if v.source == "probe" else f"{v.source}: {v.reason}" for v in failed
    )
    raise DeployFailed(
        f"canary step {index}/{len(plan.batches)} {reasons}; rolled back"
        f" {len(done)} host(s) to their previous release",
        hint=f"see the canary analysis above (and in the run record); fix the release and"
        f" re-run `invoke deploy --env {plan.env}`",
    )


def _revert(
    plan: DeployPlan,
    runner: Runner,
    state: DeployState,
    bus: EventBus,
    hosts: list[HostPlan],
    drainer: Drainer,
) -> None:
    """phases.revert, with the hosts that move out of the load balancers while they
    restart (when drained; a load balancer refusing is a warning: the revert goes on)."""
    moving = [hp.name for hp in hosts if state.on.get(hp.name) != state.previous.get(hp.name)]
    with drainer.out_of_service(moving, required=False):
        phases.revert(plan, runner, state, bus, hosts)
