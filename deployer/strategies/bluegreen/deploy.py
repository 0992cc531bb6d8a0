"""The blue-green deploy: lock both colors and the load balancer(s), read the live color from
the load balancer's history, deploy the idle color with the deploy machinery (stage, migrate
once, switch + health-check all of it), then switch traffic on the load balancer (`switch`);
any failure before the switch leaves traffic where it was and returns the idle hosts to their
previous release. With `watch:`, a failing watch points traffic back. Emits events; never
prints."""

from __future__ import annotations

import time
from dataclasses import replace

from deployer import phases, staging
from deployer.errors import DeployerError, DeployFailed
from deployer.events import BatchFinished, BatchStarted, EventBus, Notice
from deployer.finishing import finish_hosts
from deployer.history import Record, releases_to_prune, rollback_target
from deployer.hooks import run_hooks
from deployer.locking import lock_fleet, release_locks
from deployer.phases import DeployState, opening
from deployer.plan import DeployPlan, HostPlan
from deployer.preflight import Checks
from deployer.release import Release
from deployer.remote import scripts
from deployer.remote.shell import Script
from deployer.runner import Runner
from deployer.strategies.bluegreen.switch import color_release, switch_traffic, traffic_record
from deployer.strategies.bluegreen.traffic import TrafficPlan, color_plan, live_color


def deploy(
    plan: DeployPlan,
    traffic: TrafficPlan,
    release: Release,
    runner: Runner,
    bus: EventBus,
    *,
    checks: Checks | None = None,
) -> dict[str, str | None]:
    """Deploy `release` to the idle color and switch traffic to it. Returns app host ->
    release; raises DeployFailed with traffic untouched when anything fails first."""
    started = time.monotonic()
    state = DeployState()
    hosts = list(plan.hosts)
    bus.emit(phases.deploy_started(plan, release))
    with opening(plan, runner, bus, state, started):
        keep = plan.playbook.keep_releases
        locked = lock_fleet(
            runner, hosts, plan.run_id, "deploy", plan.release_id, keep_releases=keep
        )
        state.facts = locked.facts
        phases.run_preflight(plan, release, runner, bus, state, locked, checks)
        try:
            live = live_color(traffic, {n: state.facts[n].history for n in traffic.lb_names})
        except DeployerError:
            release_locks(runner, hosts, plan.run_id)
            raise

    idle = traffic.other(live) if live else traffic.colors[0]
    target = color_plan(plan, traffic, idle)
    idle_hosts = list(target.hosts)
    others = [hp for hp in hosts if hp.name not in traffic.members[idle]]
    live_release = color_release(traffic, live, state.facts) if live else None
    state.on = {n: state.facts[n].current for n in traffic.members[idle]}
    state.previous = {
        name: rollback_target(f.history, f.current) if f.current == plan.release_id else f.current
        for name, f in state.facts.items()
        if name in state.on
    }
    state.record["blue_green"] = {"live_before": live, "deployed": idle}
    bus.emit(
        Notice(
            level="info",
            text=(
                f"live color: {live} ({live_release or 'unknown release'}); deploying {idle}:"
                f" {' '.join(traffic.members[idle])}"
                if live
                else f"no live color yet (first deploy): deploying {idle}:"
                f" {' '.join(traffic.members[idle])}"
            ),
        )
    )
    try:
        run_hooks(runner, target, "before_stage", idle_hosts)
        staging.stage(target, release, runner, state, bus)
        run_hooks(runner, target, "after_stage", idle_hosts)
        phases.migrate(target, runner, state, bus)
        names = traffic.members[idle]
        bus.emit(BatchStarted(index=1, total=1, hosts=names))
        run_hooks(runner, target, "before_switch", idle_hosts)
        expect = plan.release_id if phases.expects_version(plan) else None
        bad = phases.switch_and_check(target, runner, state, idle_hosts, plan.release_id, expect)
        bus.emit(
            BatchFinished(
                index=1,
                total=1,
                healthy=[n for n in names if n not in bad],
                failed=sorted(bad),
                within_budget=not bad,
            )
        )
        if bad:
            phases.revert(target, runner, state, bus, idle_hosts)
            raise DeployFailed(
                f"{idle} is unhealthy ({len(bad)} of {len(names)} host(s) failed): traffic was"
                f" not switched"
                + (f"; {live} still serves {live_release}" if live else "")
                + f"; {idle} returned to its previous release where it had one",
                failures=list(bad.values()),
                hint=phases.recovery_hint(plan),
            )
        try:
            run_hooks(runner, target, "after_switch", idle_hosts)
            switched_at = time.time()  # the watch's baseline: the live color until now
            switch_traffic(
                traffic,
                runner,
                bus,
                plan.run_id,
                to=idle,
                release=plan.release_id,
                back=live,
                previous_release=live_release,
            )
        except DeployerError:
            phases.revert(target, runner, state, bus, idle_hosts)
            raise
        _watch(plan, traffic, target, runner, state, bus, idle, live, live_release, switched_at)
    except KeyboardInterrupt:
        phases.finish_failed(target, runner, state, bus, interrupted=True)
        release_locks(runner, others, plan.run_id)
        phases.finished(
            bus, plan, started, dict(state.on), ok=False, message="interrupted", extra=state.record
        )
        raise
    except DeployerError as exc:
        phases.finish_failed(target, runner, state, bus)
        release_locks(runner, others, plan.run_id)
        error = phases.failed(
            plan,
            state,
            bus,
            started,
            exc,
            f"blue-green deploy of {plan.release_id} to {plan.env} failed; traffic was not"
            " switched",
        )
        run_hooks(runner, target, "on_failure", idle_hosts, best_effort=True)
        raise error from None
    state.record["blue_green"]["live"] = idle
    try:
        _finish_switched(plan, traffic, runner, state, bus, idle, live_release)
    except KeyboardInterrupt:  # traffic is switched; the finishes in flight completed
        phases.finished(
            bus,
            plan,
            started,
            dict(state.on),
            ok=True,
            message="interrupted while finishing",
            extra=state.record,
        )
        raise
    releases = {
        hp.name: state.on.get(hp.name, state.facts[hp.name].current)
        for hp in hosts
        if traffic.color_of(hp.name)
    }
    phases.finished(bus, plan, started, releases, ok=True, extra=state.record)
    return releases


def _watch(
    plan: DeployPlan,
    traffic: TrafficPlan,
    target: DeployPlan,
    runner: Runner,
    state: DeployState,
    bus: EventBus,
    idle: str,
    live: str | None,
    live_release: str | None,
    switched_at: float,
) -> None:
    """The post-deploy watch (playbook `watch:`) of the color now serving, judged against
    the color that served before; a failing rule points traffic back in one step."""
    watch = plan.playbook.watch
    if watch is None:
        return
    from deployer.analysis.watch import watch_fleet  # only with `watch:` (Prometheus)

    serving = list(target.hosts)
    before = [plan.host(n) for n in traffic.members[live]] if live else serving
    result = watch_fleet(
        plan,
        runner,
        watch,
        hosts=serving,
        baseline_hosts=before,
        switched_at=switched_at,
        previous=[live_release] if live_release else [],
    )
    if result.ok:
        return
    if live is None:
        raise DeployFailed(
            f"{result.reason}; no color served before (first deploy): {idle} keeps the traffic",
            hint=phases.recovery_hint(plan),
        )
    switch_traffic(
        traffic,
        runner,
        bus,
        plan.run_id,
        to=live,
        release=live_release,
        back=idle,
        previous_release=plan.release_id,
    )
    phases.revert(target, runner, state, bus, serving)
    raise DeployFailed(
        f"{result.reason}; traffic switched back to {live} ({live_release or 'its release'})"
        f" in one step; {idle} returned to its previous release where it had one",
        hint=phases.recovery_hint(plan),
    )


def _finish_switched(
    plan: DeployPlan,
    traffic: TrafficPlan,
    runner: Runner,
    state: DeployState,
    bus: EventBus,
    live: str,
    previous_release: str | None,
) -> None:
    """History and unlock everywhere: the deployed color gets its deploy record (with its
    color) and prunes; every app host records the traffic switch; load balancers recorded
    theirs while switching and are only unlocked."""
    keep = plan.playbook.keep_releases
    switched = traffic_record(plan.run_id, live, plan.release_id, previous_release)

    def script(hp: HostPlan) -> Script:
        color = traffic.color_of(hp.name)
        facts = state.facts[hp.name]
        records: list[Record] = []
        prune: list[str] = []
        if color == live:
            deployed = replace(
                phases.deploy_record(plan, state.previous[hp.name], "success"), color=color
            )
            records.append(deployed)
            history = [*facts.history, deployed]
            present = sorted({*facts.releases, plan.release_id})
            prune = releases_to_prune(present, history, keep=keep, current=plan.release_id)
        if color is not None:
            records.append(switched)
        return scripts.finish(
            hp.layout,
            plan.run_id,
            history=[r.to_json() for r in records],
            prune=prune,
            sudo=plan.playbook.cleanup_sudo,
        )

    state.record.update(finish_hosts(runner, bus, plan.env, plan.hosts, script).record())
