"""The blue-green flows. Deploy: lock both colors and the load balancer(s), read the live
color from the load balancer's history, deploy the idle color with the deploy machinery
(stage, migrate once, switch + health-check all of it), then switch traffic on the load
balancer; any failure before the switch leaves traffic where it was and returns the idle
hosts to their previous release. Rollback: switch traffic back to the other color, whose
hosts still run the previous release, once they prove healthy (`before_rollback` hooks run on
that color first and can stop it; `after_rollback` runs after, best effort). Emits events;
never prints."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from deployer import phases
from deployer.analysis.watch import watch_fleet
from deployer.errors import DeployerError, DeployFailed, PreflightError
from deployer.events import BatchFinished, BatchStarted, EventBus, Notice, RunStarted
from deployer.facts import HostFacts
from deployer.finishing import finish_hosts
from deployer.history import Record, release_stack, releases_to_prune, rollback_target
from deployer.hooks import rollback_hosts, run_hooks
from deployer.locking import acquire_locks, lock_fleet, release_locks
from deployer.phases import DeployState, opening
from deployer.plan import DeployPlan, HostPlan
from deployer.preflight import Checks
from deployer.probe import check_host
from deployer.release import Release
from deployer.remote import scripts
from deployer.remote.shell import Script
from deployer.remote.transport import Result
from deployer.runner import Runner, failures, operator, utc_now
from deployer.traffic import TRAFFIC, LbPlan, TrafficPlan, color_plan, live_color


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
    bus.emit(
        RunStarted(
            run_id=plan.run_id,
            action="deploy",
            env=plan.env,
            release=plan.release_id,
            hosts=[h.name for h in hosts],
            source=release.source or release.commit or "",
            built_at=release.mtime,
        )
    )
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
    live_release = _color_release(traffic, live, state.facts) if live else None
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
        phases.stage(target, release, runner, state, bus)
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
        error = (
            exc
            if isinstance(exc, DeployFailed)
            else DeployFailed(
                f"blue-green deploy of {plan.release_id} to {plan.env} failed; traffic was not"
                " switched",
                failures=[exc],
                hint=phases.recovery_hint(plan),
            )
        )
        error.releases = dict(state.on)
        phases.finished(
            bus, plan, started, dict(state.on), ok=False, message=error.message, extra=state.record
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


def _color_release(
    traffic: TrafficPlan, color: str | None, facts: dict[str, HostFacts]
) -> str | None:
    if color is None:
        return None
    found = {facts[n].current for n in traffic.members[color] if n in facts}
    return found.pop() if len(found) == 1 else None


def _traffic_record(run_id: str, color: str, release: str | None, previous: str | None) -> Record:
    return Record(
        time=utc_now(),
        user=operator(),
        release=release or "",
        action=TRAFFIC,
        result="success",
        run_id=run_id,
        previous=previous,
        color=color,
    )


def switch_traffic(
    traffic: TrafficPlan,
    runner: Runner,
    bus: EventBus,
    run_id: str,
    *,
    to: str,
    release: str | None,
    back: str | None,
    previous_release: str | None = None,
) -> None:
    """Point every load balancer at color `to`, one at a time. When one fails, those
    already switched are pointed back at `back` (best effort) and DeployFailed is raised."""
    record = _traffic_record(run_id, to, release, previous_release).to_json()
    done: list[str] = []
    for lb in traffic.lbs:
        script = lb.switch_script(run_id, to, release, record)
        failed: DeployerError | None = None
        outcome = _run_on(runner, lb.hp, script)
        if isinstance(outcome, DeployerError):
            failed = outcome
            what = "the load balancer keeps its previous config"
        else:
            done.append(lb.name)
            failed = _verify(runner, lb, release)
            what = f"it was switched but does not serve {release}"
        if failed is not None:
            _switch_back(traffic, runner, bus, run_id, done, back, previous_release)
            where = f"; {', '.join(done)} pointed back at {back}" if done and back else ""
            raise DeployFailed(
                f"switching traffic to {to} failed on {lb.name}: {what}{where}",
                failures=[failed],
                hint=f"fix the load balancer config or template, then re-run the deploy"
                f" (look at {lb.dest} and its validate command on {lb.name})",
            )
        bus.emit(Notice(level="info", text=f"{lb.name}: traffic now goes to {to}"))


def _verify(runner: Runner, lb: LbPlan, release: str | None) -> None | DeployerError:
    """After a reload: ask the load balancer itself until the new release answers (a reload
    is a signal; old workers may accept for a moment more)."""
    if lb.verify is None:
        return None
    hp, health = lb.verify
    expect = release if health.http and health.http.expect_version else None
    outcome = runner.each([hp], lambda h: check_host(runner, health, h, expect))[hp.name]
    return outcome if isinstance(outcome, DeployerError) else None


def _run_on(runner: Runner, hp: HostPlan, script: Script) -> Result | DeployerError:
    # Through `each`, so that Ctrl-C waits for a load balancer switch in flight.
    return runner.each([hp], lambda h: runner.step(h.host, script))[hp.name]


def _switch_back(
    traffic: TrafficPlan,
    runner: Runner,
    bus: EventBus,
    run_id: str,
    done: Sequence[str],
    back: str | None,
    release: str | None,
) -> None:
    if not done or back is None:
        return
    record = _traffic_record(run_id, back, release, None).to_json()
    for lb in traffic.lbs:
        if lb.name not in done:
            continue
        script = lb.switch_script(run_id, back, release, record)
        outcome = _run_on(runner, lb.hp, script)
        if isinstance(outcome, DeployerError):
            bus.emit(Notice(level="error", text=f"{lb.name}: pointing back at {back}: {outcome}"))


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
    switched = _traffic_record(plan.run_id, live, plan.release_id, previous_release)

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


def rollback(
    plan: DeployPlan,
    traffic: TrafficPlan,
    runner: Runner,
    bus: EventBus,
    *,
    run_id: str,
    to: str | None = None,
) -> dict[str, str | None]:
    """Switch traffic back to the other color in one step, after checking that its hosts
    run one successfully deployed release and answer healthy on it."""
    started = time.monotonic()
    hosts = list(plan.hosts)
    facts = acquire_locks(runner, hosts, run_id, "rollback", to)
    try:
        live = live_color(traffic, {n: facts[n].history for n in traffic.lb_names})
        if live is None:
            raise PreflightError(
                "no live color is recorded on the load balancer: there is nothing to switch"
                " back from; nothing was changed",
                hint=f"deploy first: invoke deploy --env {plan.env}",
            )
        back = traffic.other(live)
        target = _rollback_target(traffic, facts, back, to, plan.env)
        live_release = _color_release(traffic, live, facts)
        backing = [plan.host(n) for n in traffic.members[back]]
        health = plan.playbook.health
        expect = target if phases.expects_version(plan) else None
        bad = failures(runner.each(backing, lambda hp: check_host(runner, health, hp, expect)))
        if bad:
            raise PreflightError(
                f"{back} is not healthy on {target}, so traffic stays on {live}; nothing was"
                " changed:\n" + "\n".join(f"  {e}" for e in bad.values()),
                hint=f"bring {back} back (`invoke status --env {plan.env}`), or deploy a fix",
            )
    except DeployerError:
        release_locks(runner, hosts, run_id)
        raise
    bus.emit(
        RunStarted(
            run_id=run_id,
            action="rollback",
            env=plan.env,
            release=target,
            hosts=[h.name for h in hosts],
            batches=[traffic.members[back]],
        )
    )
    # Rollback hooks run on the color traffic goes back to, with the release it runs.
    hooked = rollback_hosts(
        backing,
        to={hp.name: target for hp in backing},
        came_from={hp.name: live_release for hp in backing},
    )
    ok = False
    message = "interrupted"
    failure: DeployerError | None = None
    try:
        try:
            run_hooks(runner, plan, "before_rollback", hooked)
        except DeployerError as exc:
            raise DeployFailed(
                f"before_rollback hook failed; traffic stays on {live}; nothing was changed",
                failures=[exc],
                hint=f"fix the hook, or the reason it refused, and re-run `invoke rollback"
                f" --env {plan.env}`",
            ) from None
        switch_traffic(
            traffic,
            runner,
            bus,
            run_id,
            to=back,
            release=target,
            back=live,
            previous_release=live_release,
        )
        ok, message = True, ""
    except DeployerError as exc:
        message = exc.message
        failure = exc
    finally:
        record = _traffic_record(run_id, back, target, live_release).to_json() if ok else None

        def script(hp: HostPlan) -> Script:
            records = [record] if record and traffic.color_of(hp.name) else []
            return scripts.finish(hp.layout, run_id, history=records, prune=[])

        finish_hosts(runner, bus, plan.env, hosts, script)
        releases = {n: facts[n].current for n in facts if traffic.color_of(n)}
        phases.finished(
            bus,
            plan,
            started,
            releases,
            ok=ok,
            message=message,
            extra={"blue_green": {"live_before": live, "live": back if ok else live}},
            action="rollback",
        )
    if failure is not None:
        run_hooks(runner, plan, "on_failure", hooked, best_effort=True)
        raise failure
    run_hooks(runner, plan, "after_rollback", hooked, best_effort=True)
    return releases


def _rollback_target(
    traffic: TrafficPlan, facts: dict[str, HostFacts], back: str, to: str | None, env: str
) -> str:
    problems = []
    releases = set()
    for name in traffic.members[back]:
        current = facts[name].current
        if current is None:
            problems.append(f"{name}: no release (the {back} color was never deployed)")
        elif current not in release_stack(facts[name].history):
            problems.append(f"{name}: {current} never deployed successfully there")
        else:
            releases.add(current)
    if not problems and len(releases) > 1:
        problems.append(f"{back} runs several releases: {', '.join(sorted(releases))}")
    if problems:
        raise PreflightError(
            f"cannot switch traffic back to {back}; nothing was changed:\n"
            + "\n".join("  " + p for p in problems),
            hint=f"deploy instead: invoke deploy --env {env} (it goes to {back})",
        )
    target = releases.pop()
    if to is not None and to != target:
        raise PreflightError(
            f"a blue-green rollback switches traffic to {back}, which runs {target}, not {to};"
            " nothing was changed",
            hint=f"drop --to, or deploy {to}: invoke deploy --env {env} --ref ...",
        )
    return target
