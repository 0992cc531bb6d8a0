"""Rollback: return the fleet to the previous successfully deployed release (from the recorded
history, never file times), or to an explicit one. Every host's target is checked before any
host switches; then `before_rollback` hooks (a failure stops the rollback, nothing switched),
batches switch, restart and health-check like a deploy, and `after_rollback` hooks run (best
effort) once every host is back; a failed rollback runs `on_failure`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext

from deployer import phases
from deployer.errors import DeployerError, DeployFailed, PreflightError, RemoteCommandError
from deployer.events import BatchFinished, BatchStarted, EventBus, RunStarted
from deployer.facts import HostFacts
from deployer.finishing import FinishReport, finish_hosts
from deployer.history import Record, rollback_target, undone_run
from deployer.hooks import rollback_hosts, run_hooks
from deployer.locking import acquire_locks, release_locks
from deployer.plan import DeployPlan, HostPlan
from deployer.probe import check_host
from deployer.remote import scripts
from deployer.remote.shell import Script
from deployer.runner import Runner, failures, operator, utc_now
from deployer.strategies.drain import DrainPlan
from deployer.strategies.drainer import Drainer, DrainRefused

PlanFor = Callable[[str], DeployPlan]  # release id -> the plan rendered for it


def choose_targets(facts: dict[str, HostFacts], to: str | None, env: str) -> dict[str, str]:
    """Each host's rollback target, or PreflightError naming every host that has none (and,
    when some do, how to roll back just those: the fleet after a `--limit` deploy)."""
    targets: dict[str, str] = {}
    problems: list[str] = []
    for name, f in facts.items():
        target = to or rollback_target(f.history, f.current)
        if target is None:
            problems.append(
                f"{name}: no earlier successful release in its history"
                f" (current: {f.current or 'none'})"
            )
        elif target not in f.releases:
            problems.append(f"{name}: release {target} is not on the host (pruned or never staged)")
        else:
            targets[name] = target
    if problems:
        hint = (
            f"pick a release every host has: `invoke releases --env {env}`, then"
            f" `invoke rollback --env {env} --to RELEASE`"
        )
        if targets and not to:
            hint += (
                "; or roll back only the hosts that have one:"
                f" `invoke rollback --env {env} --limit {','.join(sorted(targets))}`"
            )
        raise PreflightError(
            "rollback target missing; no host was switched:\n"
            + "\n".join("  " + p for p in problems),
            hint=hint,
        )
    return targets


def rollback_started(
    plan: DeployPlan, target: str, batches: Sequence[Sequence[str]], *, run_id: str
) -> RunStarted:
    """The RunStarted event of a rollback (rolling or blue-green) of `plan`'s hosts to
    `target`, as `phases.deploy_started` is a deploy's."""
    return RunStarted(
        run_id=run_id,
        action="rollback",
        env=plan.env,
        release=target,
        hosts=[h.name for h in plan.hosts],
        batches=batches,
    )


def rollback(
    plan_for: PlanFor,
    runner: Runner,
    bus: EventBus,
    *,
    run_id: str,
    to: str | None = None,
    drain: DrainPlan | None = None,
) -> dict[str, str | None]:
    """Roll every host of `plan_for`'s plan back; with `drain` (the plan then holds the app
    hosts only), each batch leaves the load balancers while it restarts."""
    started = time.monotonic()
    probe_plan = plan_for(to or "0" * 16 + "Z-0000000")
    hosts = list(probe_plan.hosts)
    facts = acquire_locks(runner, hosts, run_id, "rollback", to)
    on: dict[str, str | None] = {n: f.current for n, f in facts.items()}
    try:
        targets = choose_targets(facts, to, probe_plan.env)
        distinct = Counter(targets.values())
        if len(distinct) > 1:
            raise PreflightError(
                "hosts disagree on the rollback target: "
                + ", ".join(f"{n}→{t}" for n, t in sorted(targets.items())),
                hint=f"choose one with `invoke rollback --env {probe_plan.env} --to RELEASE`",
            )
        target = next(iter(distinct))
        plan = plan_for(target)
    except DeployerError:
        release_locks(runner, hosts, run_id)
        raise
    bus.emit(rollback_started(plan, target, plan.batches, run_id=run_id))
    came_from = dict(on)
    # Rollback hooks see the hosts that move; on_failure sees every host of the run.
    moving = rollback_hosts(
        [hp for hp in plan.hosts if on[hp.name] != target],
        to={n: target for n in on},
        came_from=came_from,
    )
    everyone = rollback_hosts(plan.hosts, to={n: target for n in on}, came_from=came_from)
    try:
        run_hooks(runner, plan, "before_rollback", moving)
    except KeyboardInterrupt:
        release_locks(runner, hosts, run_id)
        phases.finished(
            bus, plan, started, dict(on), ok=False, message="interrupted", action="rollback"
        )
        raise
    except DeployerError as exc:
        # Nothing has switched yet: stop here, with the hook's output, and give the lock back.
        release_locks(runner, hosts, run_id)
        message = f"before_rollback hook failed; no host was switched to {target}"
        phases.finished(bus, plan, started, dict(on), ok=False, message=message, action="rollback")
        run_hooks(runner, plan, "on_failure", everyone, best_effort=True)
        raise DeployFailed(
            message,
            failures=[exc],
            releases=on,
            hint=f"fix the hook, or the reason it refused, and re-run `invoke rollback"
            f" --env {plan.env}`",
        ) from None
    failed: dict[str, DeployerError] = {}
    drainer = Drainer(drain, runner, bus, run_id)
    refused: DrainRefused | None = None
    try:
        try:
            failed = switch_batches(plan, runner, bus, on, target, run_id, drainer=drainer)
        except DrainRefused as exc:
            refused = exc  # nothing of that batch restarted
    finally:
        # Whatever happened above, and never able to turn a healthy host into a failed one.
        report = _finish(plan, runner, bus, facts, on, target, run_id, failed)
    ok = not failed and refused is None
    phases.finished(bus, plan, started, dict(on), ok=ok, action="rollback", extra=report.record())
    if refused is not None:
        run_hooks(runner, plan, "on_failure", everyone, best_effort=True)
        refused.releases = dict(on)
        raise refused
    if not ok:
        run_hooks(runner, plan, "on_failure", everyone, best_effort=True)
        raise DeployFailed(
            f"rollback to {target} failed on {len(failed)} host(s)",
            failures=list(failed.values()),
            releases=on,
            hint=f"inspect with `invoke status --env {plan.env}`",
        )
    # Best effort: the hosts are back and unlocked, whatever this hook says.
    run_hooks(runner, plan, "after_rollback", moving, best_effort=True)
    return on


def switch_batches(
    plan: DeployPlan,
    runner: Runner,
    bus: EventBus,
    on: dict[str, str | None],
    target: str,
    run_id: str,
    *,
    drainer: Drainer | None = None,
) -> dict[str, DeployerError]:
    """Switch the plan's hosts not yet on `target` to it, batch by batch, restarting and
    health-checking each; `on` follows where every host is. Stops after the first batch with
    a failure and returns the failed hosts, with why (a rollback, and both legs of a drill).
    With `drainer`, each batch is out of the load balancers while it restarts; a load
    balancer refusing that raises DrainRefused before anything of the batch restarted."""
    http = plan.playbook.health.http
    expect = target if http and http.expect_version else None
    failed: dict[str, DeployerError] = {}
    for index, names in enumerate(plan.batches, 1):
        batch = [plan.host(n) for n in names if on[n] != target]
        bus.emit(BatchStarted(index=index, total=len(plan.batches), hosts=names))

        def one(hp: HostPlan) -> None:
            try:
                runner.step(
                    hp.host,
                    scripts.switch(hp.layout, target, run_id, restart=hp.restart, env=hp.env),
                )
            except RemoteCommandError as exc:
                # The rename is the switch sub-step's last command: a later failure (the
                # restart) means the host is on the target.
                if exc.step != "switch":
                    on[hp.name] = target
                raise
            on[hp.name] = target
            check_host(runner, plan.playbook.health, hp, expect)

        with drainer.out_of_service([hp.name for hp in batch]) if drainer else nullcontext():
            failed = failures(runner.each(batch, one))
        bus.emit(
            BatchFinished(
                index=index,
                total=len(plan.batches),
                healthy=[n for n in names if n not in failed],
                failed=sorted(failed),
                within_budget=not failed,
            )
        )
        if failed:
            break
    return failed


def _finish(
    plan: DeployPlan,
    runner: Runner,
    bus: EventBus,
    facts: dict[str, HostFacts],
    on: dict[str, str | None],
    target: str,
    run_id: str,
    failed: dict[str, DeployerError],
) -> FinishReport:
    """Record the rollback in each host's history (where it moved or failed) and unlock it."""

    def script(hp: HostPlan) -> Script:
        moved = on[hp.name] == target and facts[hp.name].current != target
        records = []
        if moved or hp.name in failed:
            now = utc_now()
            record = Record(
                time=now,
                user=operator(),
                release=target,
                action="rollback",
                result="failed" if hp.name in failed else "success",
                run_id=run_id,
                previous=facts[hp.name].current,
                ended=now,
                undid=undone_run(facts[hp.name].history, facts[hp.name].current),
            )
            records.append(record.to_json())
        return scripts.finish(
            hp.layout, run_id, history=records, prune=[], sudo=plan.playbook.cleanup_sudo
        )

    return finish_hosts(runner, bus, plan.env, plan.hosts, script)
