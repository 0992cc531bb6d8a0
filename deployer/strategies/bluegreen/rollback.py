"""The blue-green rollback: traffic back to the other color in one step, whose hosts still run
the previous release, once they prove healthy (`before_rollback` hooks run on that color
first and can stop it; `after_rollback` runs after, best effort). Emits events; never prints."""

from __future__ import annotations

import time

from deployer import phases
from deployer.errors import DeployerError, DeployFailed, PreflightError
from deployer.events import EventBus
from deployer.facts import HostFacts
from deployer.finishing import finish_hosts
from deployer.history import release_stack
from deployer.hooks import rollback_hosts, run_hooks
from deployer.locking import acquire_locks, release_locks
from deployer.plan import DeployPlan, HostPlan
from deployer.probe import check_host
from deployer.remote import scripts
from deployer.remote.shell import Script
from deployer.rollback import rollback_started
from deployer.runner import Runner, failures
from deployer.strategies.bluegreen.switch import color_release, switch_traffic, traffic_record
from deployer.strategies.bluegreen.traffic import TrafficPlan, live_color


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
        live_release = color_release(traffic, live, facts)
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
    bus.emit(rollback_started(plan, target, [traffic.members[back]], run_id=run_id))
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
        record = traffic_record(run_id, back, target, live_release).to_json() if ok else None

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
