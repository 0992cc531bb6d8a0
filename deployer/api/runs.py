"""The operations that change hosts: deploy (rolling, canary or blue-green), rollback and the
rollback drill. Each builds what it needs here, then hands a plan to its flow with a runner
and a bus; the flows do the work."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from deployer.api.building import build, iso, rebuild, resumable_run
from deployer.api.checklist import checklist_policy, this_machine
from deployer.api.project import PLACEHOLDER_RELEASE, Loaded, is_production
from deployer.api.wiring import (
    Options,
    drain_plan,
    event_bus,
    make_runner,
    notifying,
    traffic_plan,
)
from deployer.dryrun import describe, describe_traffic
from deployer.errors import ConfigError, PreflightError
from deployer.hooks import run_build_hooks
from deployer.preflight import Checks
from deployer.release import validate_release_id
from deployer.runner import new_run_id, utc_now
from deployer.strategies.drain import describe_drain
from deployer.strategies.rolling import deploy as run_deploy

if TYPE_CHECKING:
    from deployer.drill import DrillResult, Smoke

# Each strategy's flow (blue-green, rollback, drill) is imported where it runs: a rolling
# deploy loads none of the others.


def deploy(
    loaded: Loaded,
    options: Options,
    *,
    ref: str | None = None,
    dry_run: bool = False,
    skip_unreachable: bool = False,
    resume: bool = False,
    override: str | None = None,
    strict: bool = False,
) -> dict[str, str | None] | str:
    """Deploy; with dry_run, return the printed plan instead and connect to nothing. With
    resume, rebuild the release of the last unfinished deploy and bring every host to it.

    The pre-deployment checklist runs once the lock is taken: a critical failure stops the
    deploy; so does any other failure unless `override` names it ("health,rollback" or
    "all-warnings"), and with `strict` any warning too. Resuming, only critical ones stop."""
    policy = checklist_policy(loaded, override, strict, lenient=resume)
    if loaded.playbook.strategy.kind == "blue_green" and (resume or skip_unreachable):
        raise ConfigError(
            "--resume and --skip-unreachable do not apply to a blue-green deploy: it deploys"
            " a whole color, and traffic moves only once that color is healthy",
            file=loaded.playbook.path,
            key_path="strategy.kind",
            hint=f"run `invoke deploy --env {loaded.env}` again: it redeploys the idle color",
        )
    run_id = new_run_id()
    started = utc_now()
    with tempfile.TemporaryDirectory(prefix="deployer-build-") as tmp:
        resumed = resumable_run(loaded) if resume else None
        if not dry_run:
            # The release id is not known yet: RELEASE_ID is the placeholder here.
            before = loaded.plan(PLACEHOLDER_RELEASE, run_id, render_files=False)
            run_build_hooks(before.hosts, "before_build")
        if resumed is not None:
            release = rebuild(loaded, Path(tmp), resumed)
        else:
            release = build(loaded, Path(tmp), ref)
        plan = replace(
            loaded.plan(release.id, run_id),
            started=started,
            committed=iso(release.committed) if release.committed else None,
        )
        traffic = traffic_plan(loaded, plan)
        plan, drain = drain_plan(loaded, plan)
        if dry_run:
            return (
                describe(plan, release)
                + (describe_traffic(traffic) if traffic else "")
                + (describe_drain(drain) if drain else "")
            )
        run_build_hooks(plan.hosts, "after_build")
        local = this_machine(loaded, plan, release)
        bus = event_bus(options, loaded.project.runs)
        runner = make_runner(loaded, options, bus)
        try:
            with notifying(loaded, bus):
                if traffic is not None:
                    from deployer.strategies.bluegreen.deploy import deploy as run_blue_green

                    return run_blue_green(
                        plan, traffic, release, runner, bus, checks=Checks(local, policy)
                    )
                return run_deploy(
                    plan,
                    release,
                    runner,
                    bus,
                    skip_unreachable=skip_unreachable,
                    resume_from=resumed["run_id"] if resumed else None,
                    checks=Checks(local, policy),
                    drain=drain,
                )
        finally:
            runner.close()


def rollback(loaded: Loaded, options: Options, *, to: str | None = None) -> dict[str, str | None]:
    """Back to the previous release; for a blue-green playbook, traffic back to the other
    color (whose hosts still run the previous release) in one step."""
    if to is not None:
        to = validate_release_id(to)
    run_id = new_run_id()
    traffic = None
    plan = loaded.plan(PLACEHOLDER_RELEASE, run_id, render_files=False)
    if loaded.playbook.strategy.kind == "blue_green":
        traffic = traffic_plan(loaded, plan)
    _, drain = drain_plan(loaded, plan)
    bus = event_bus(options, loaded.project.runs)
    runner = make_runner(loaded, options, bus)
    try:
        with notifying(loaded, bus):
            if traffic is not None:
                from deployer.strategies.bluegreen.rollback import rollback as run_blue_green

                return run_blue_green(plan, traffic, runner, bus, run_id=run_id, to=to)
            from deployer.rollback import rollback as run_rollback

            return run_rollback(
                lambda rid: drain_plan(loaded, loaded.plan(rid, run_id, render_files=False))[0],
                runner,
                bus,
                run_id=run_id,
                to=to,
                drain=drain,
            )
    finally:
        runner.close()


def drill(
    loaded: Loaded,
    options: Options,
    *,
    hold: float,
    smoke: Smoke | None = None,
    schema_ok: bool = False,
    yes: bool = False,
) -> DrillResult:
    """A rehearsed rollback and roll-forward (`deployer.drill`). Refuses a production
    environment without `yes`, and a blue-green playbook (its rollback is a traffic switch)."""
    if is_production(loaded) and not yes:
        raise PreflightError(
            f"{loaded.env} is marked as production: a drill switches every host back and forth",
            hint=f"run it deliberately: `invoke drill --env {loaded.env} --yes`",
        )
    if loaded.playbook.strategy.kind == "blue_green":
        raise ConfigError(
            "a drill rehearses a rolling rollback; a blue-green playbook rolls back by"
            " switching traffic, which `invoke rollback` already does in one step",
            file=loaded.playbook.path,
            key_path="strategy.kind",
        )
    from deployer.drill import drill as run_drill

    run_id = new_run_id()
    bus = event_bus(options, loaded.project.runs)
    runner = make_runner(loaded, options, bus)
    try:
        with notifying(loaded, bus):
            return run_drill(
                lambda rid: loaded.plan(rid, run_id, render_files=False),
                runner,
                bus,
                run_id=run_id,
                hold=hold,
                smoke=smoke,
                schema_ok=schema_ok,
            )
    finally:
        runner.close()
