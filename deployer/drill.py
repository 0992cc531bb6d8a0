"""A rollback drill: rehearse the rollback on the real fleet, then come back. Under one lock:
refuse unless the fleet is on one release, healthy, with a rollback target and a schema the
older code can run on; switch every host back to the target the way `invoke rollback` does
(before_rollback hooks, batches, health checks); hold there for a while, probing every host
and running an optional smoke command; roll forward to the release that was live, verified
the same way; record the drill and its timings in every host's history.

It must never leave a host anywhere but on a complete release that passed its checks, or say
which hosts are not and what to run: a failed leg returns every host to the release that
last passed (the live one for the first leg and the hold, the target for the roll-forward).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from deployer import phases
from deployer.errors import DeployerError, DeployFailed, PreflightError, RemoteCommandError
from deployer.events import EventBus, Notice, RunStarted
from deployer.facts import HostFacts
from deployer.finishing import finish_hosts
from deployer.history import Record
from deployer.hooks import rollback_hosts, run_hooks
from deployer.locking import acquire_locks, release_locks
from deployer.plan import DeployPlan, HostPlan
from deployer.probe import check_host, probe_once
from deployer.remote import scripts
from deployer.remote.drill import SCHEMA_FILE, parse_schemas, read_schemas
from deployer.remote.shell import Script
from deployer.rollback import choose_targets, switch_batches
from deployer.runner import Runner, failures, operator, output_tail, utc_now

PlanFor = Callable[[str], DeployPlan]  # release id -> the plan rendered for it
PROBE_PLACEHOLDER = "00000000T000000Z-0000000"


@dataclass(frozen=True)
class Smoke:
    """A command run after each leg and through the hold: on this machine once, or on every
    host in its live release. Exit 0 passes. It gets RELEASE_ID, DEPLOY_ENV, DRILL_PHASE."""

    command: str
    on_hosts: bool = False


@dataclass
class DrillResult:
    target: str
    live: str
    on: dict[str, str | None]
    timings: dict[str, float] = field(default_factory=dict)  # restore, hold, forward (s)
    ok: bool = False
    message: str = ""


def drill(
    plan_for: PlanFor,
    runner: Runner,
    bus: EventBus,
    *,
    run_id: str,
    hold: float,
    smoke: Smoke | None = None,
    schema_ok: bool = False,
) -> DrillResult:
    probe_plan = plan_for(PROBE_PLACEHOLDER)
    facts = acquire_locks(runner, probe_plan.hosts, run_id, "drill", None)
    try:
        live, target = _refusals(plan_for, runner, facts, probe_plan.env, schema_ok)
        back, forward = plan_for(target), plan_for(live)
    except (DeployerError, KeyboardInterrupt):
        release_locks(runner, probe_plan.hosts, run_id)
        raise
    bus.emit(
        RunStarted(
            run_id=run_id,
            action="drill",
            env=back.env,
            release=target,
            hosts=[h.name for h in back.hosts],
            batches=back.batches,
        )
    )
    result = DrillResult(target, live, {n: f.current for n, f in facts.items()})
    run = _Drill(back, forward, runner, bus, run_id, result, smoke)
    started = time.monotonic()
    failed: dict[str, DeployerError] = {}
    interrupted = False
    try:
        failed = run.rehearse(hold)
    except KeyboardInterrupt:
        interrupted = True
        result.message = "drill interrupted: " + ", ".join(
            f"{n} on {r or 'none'}" for n, r in sorted(result.on.items())
        )
    finally:
        report = finish_hosts(runner, bus, back.env, back.hosts, run.record_script(facts))
    phases.finished(
        bus,
        back,
        started,
        dict(result.on),
        ok=result.ok,
        message=result.message,
        action="drill",
        extra={"drill": {"target": target, "live": live, **result.timings}, **report.record()},
    )
    if interrupted:
        raise KeyboardInterrupt
    if not result.ok:
        run_hooks(runner, back, "on_failure", back.hosts, best_effort=True)
        raise DeployFailed(
            result.message, failures=list(failed.values()), releases=result.on, hint=run.hint()
        )
    return result


def _refusals(
    plan_for: PlanFor,
    runner: Runner,
    facts: dict[str, HostFacts],
    env: str,
    schema_ok: bool,
) -> tuple[str, str]:
    """The live release and the drill's target, or PreflightError saying why not to drill."""
    currents = Counter(f.current for f in facts.values())
    if len(currents) != 1 or None in currents:
        on = ", ".join(f"{n}→{f.current or 'none'}" for n, f in sorted(facts.items()))
        raise PreflightError(
            f"the hosts are not on one release ({on}); a drill starts from a settled fleet",
            hint=f"bring them together first: `invoke deploy --env {env}` or `invoke rollback`",
        )
    live = next(iter(currents))
    assert live is not None
    targets = Counter(choose_targets(facts, None, env).values())
    if len(targets) != 1:
        raise PreflightError(
            "the hosts disagree on the rollback target: " + ", ".join(sorted(targets)),
            hint=f"see `invoke releases --env {env}`",
        )
    target = next(iter(targets))
    plan = plan_for(live)
    http = plan.playbook.health.http
    expect = live if http and http.expect_version else None
    unhealthy = failures(
        runner.each(plan.hosts, lambda hp: check_host(runner, plan.playbook.health, hp, expect))
    )
    if unhealthy:
        raise PreflightError(
            f"the fleet is not healthy on {live}; a drill starts from a healthy fleet:\n"
            + "\n".join("  " + str(e).splitlines()[0] for e in unhealthy.values()),
            hint=f"fix it first; `invoke status --env {env}` shows each host",
        )
    if plan.migrate_host is not None and not schema_ok:
        _check_schema(runner, plan, target, live)
    return live, target


def _check_schema(runner: Runner, plan: DeployPlan, target: str, live: str) -> None:
    """The playbook migrates, so the live schema may be newer than the target's code: go on
    only when both releases declare the same schema in their SCHEMA file."""
    hp = plan.host(plan.migrate_host or plan.hosts[0].name)
    found = parse_schemas(runner.step(hp.host, read_schemas(hp.layout, [target, live])).output)
    old, new = found.get(target, ""), found.get(live, "")
    hint = (
        f"give each release a {SCHEMA_FILE} file naming the schema its code needs, or, once you"
        f" know {target} runs on {live}'s schema, pass --schema-ok"
    )
    if not old or not new:
        missing = " and ".join(r for r, v in ((target, old), (live, new)) if not v)
        raise PreflightError(
            f"migration state unknown: the playbook runs migrations and {missing} declare(s) no"
            f" schema ({SCHEMA_FILE}), so {target}'s code may not run on the live database",
            hint=hint,
        )
    if old != new:
        raise PreflightError(
            f"migration state unsafe: {target} needs schema {old}, the live release {live}"
            f" needs {new}; migrations ran since, and they are never rolled back",
            hint=hint,
        )


class _Drill:
    """The two legs and the hold; `result` follows where every host is."""

    def __init__(
        self,
        back: DeployPlan,
        forward: DeployPlan,
        runner: Runner,
        bus: EventBus,
        run_id: str,
        result: DrillResult,
        smoke: Smoke | None,
    ) -> None:
        self.back, self.forward, self.runner, self.bus = back, forward, runner, bus
        self.run_id, self.result, self.smoke = run_id, result, smoke
        self.began = utc_now()
        self.stranded: list[str] = []  # hosts not on a release that passed its checks

    def say(self, text: str, level: str = "info") -> None:
        self.bus.emit(Notice(level=level, text=f"drill: {text}"))

    def rehearse(self, hold: float) -> dict[str, DeployerError]:
        r, target, live = self.result, self.result.target, self.result.live
        moving = rollback_hosts(self.back.hosts, to={n: target for n in r.on}, came_from=dict(r.on))
        moving = [replace(hp, env={**hp.env, "DEPLOY_DRILL": self.run_id}) for hp in moving]
        try:
            run_hooks(self.runner, self.back, "before_rollback", moving)
        except DeployerError as exc:
            r.message = f"before_rollback hook refused the drill; no host was switched ({exc})"
            return {}
        began = time.monotonic()
        failed = switch_batches(self.back, self.runner, self.bus, r.on, target, self.run_id)
        failed = failed or self.verify(self.back, "restored")
        r.timings["restore"] = round(time.monotonic() - began, 2)
        if failed:
            return self.give_up(failed, f"rolling back to {target} failed", to=self.forward)
        self.say(f"every host back on {target}, verified, in {r.timings['restore']:.1f}s")
        run_hooks(self.runner, self.back, "after_rollback", moving, best_effort=True)
        began = time.monotonic()
        failed = self.hold(hold)
        r.timings["hold"] = round(time.monotonic() - began, 2)
        if failed:
            return self.give_up(failed, f"{target} failed during the hold", to=self.forward)
        self.say(f"held {r.timings['hold']:.1f}s on {target}, every check passing")
        began = time.monotonic()
        failed = switch_batches(self.forward, self.runner, self.bus, r.on, live, self.run_id)
        failed = failed or self.verify(self.forward, "forward")
        r.timings["forward"] = round(time.monotonic() - began, 2)
        if failed:
            return self.give_up(failed, f"rolling forward to {live} failed", to=self.back)
        self.say(f"every host forward on {live}, verified, in {r.timings['forward']:.1f}s")
        r.ok = True
        r.message = (
            f"drill passed: restored {target} in {r.timings['restore']:.1f}s, held"
            f" {r.timings['hold']:.1f}s, rolled forward to {live} in {r.timings['forward']:.1f}s"
        )
        return {}

    def give_up(
        self, failed: dict[str, DeployerError], what: str, *, to: DeployPlan
    ) -> dict[str, DeployerError]:
        """Return every host to `to`'s release (the one that last passed its checks)."""
        r = self.result
        self.say(f"{what} on {', '.join(sorted(failed))}; returning to {to.release_id}", "error")
        for name in failed:  # check even hosts that look there: they just failed a check
            if r.on.get(name) == to.release_id:
                r.on[name] = phases.UNKNOWN
        again = switch_batches(to, self.runner, self.bus, r.on, to.release_id, self.run_id)
        self.stranded = sorted(n for n in r.on if n in again or r.on[n] != to.release_id)
        if not self.stranded:
            r.message = (
                f"drill failed: {what}; every host is back on {to.release_id}, which passed its"
                " health checks"
                + (
                    f". {r.live} was live before the drill and now fails: find out why before"
                    f" the next deploy"
                    if to.release_id == r.target
                    else ""
                )
            )
        else:
            r.message = (
                f"drill failed: {what}, and returning to {to.release_id} failed on"
                f" {', '.join(self.stranded)}: "
                + ", ".join(f"{n} is on {r.on.get(n) or 'none'}" for n in self.stranded)
            )
        return {**failed, **again}

    def hold(self, seconds: float) -> dict[str, DeployerError]:
        """Probe every host (and run the smoke command) until `seconds` have passed; the first
        failure ends the hold. At least one round, whatever `seconds` says."""
        health = self.back.playbook.health
        interval = max(1.0, health.interval)
        http = health.http
        expect = self.result.target if http and http.expect_version else None
        end = time.monotonic() + seconds
        while True:

            def one(hp: HostPlan) -> None:
                probe = probe_once(self.runner, health, hp, expect)
                if not probe.ok:
                    raise DeployerError(f"{hp.name}: health during the hold: {probe.detail}")

            failed = failures(self.runner.each(self.back.hosts, one))
            failed = failed or self.verify(self.back, "hold")
            left = end - time.monotonic()
            if failed or left <= 0:
                return failed
            time.sleep(min(interval, left))

    def verify(self, plan: DeployPlan, phase: str) -> dict[str, DeployerError]:
        """The smoke command, if any: once here, or on every host."""
        smoke = self.smoke
        if smoke is None:
            return {}
        env = {"RELEASE_ID": plan.release_id, "DEPLOY_ENV": plan.env, "DRILL_PHASE": phase}
        if smoke.on_hosts:

            def one(hp: HostPlan) -> None:
                check = scripts.check_command(hp.layout, smoke.command, {**hp.env, **env})
                self.runner.step(hp.host, replace(check, step=f"smoke ({phase})"))

            return failures(self.runner.each(plan.hosts, one))
        done = subprocess.run(  # the operator's own command: shell by definition
            ["bash", "-c", smoke.command],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=max(plan.playbook.health.deadline, 10),
            check=False,
        )
        if done.returncode == 0:
            return {}
        error = RemoteCommandError(
            "local",
            f"smoke ({phase})",
            done.returncode,
            output_tail(done.stdout + done.stderr, 10),
            command=smoke.command,
        )
        return {"local": error}

    def hint(self) -> str:
        r, env = self.result, self.back.env
        if not self.stranded and all(on == r.target for on in r.on.values()):
            return (
                f"the fleet is on {r.target}; once {r.live} is fixed, `invoke rollback --env"
                f" {env} --to {r.live}` returns to it (or deploy the fix)"
            )
        if not self.stranded:
            return f"`invoke status --env {env}` shows every host; `invoke history --env {env}`"
        return (
            f"bring them back with `invoke rollback --env {env} --to {r.live}` (or --to"
            f" {r.target}) once they answer; `invoke status --env {env}` shows where each is"
        )

    def record_script(self, facts: dict[str, HostFacts]) -> Callable[[HostPlan], Script]:
        """Each host's drill record (where it ended, the timings) and its unlock."""
        r = self.result

        def script(hp: HostPlan) -> Script:
            ended = r.on.get(hp.name)
            now = utc_now()
            drill: dict[str, Any] = {"target": r.target, **r.timings}
            record = Record(
                time=now,
                user=operator(),
                release=ended if ended in (r.target, r.live) else r.live,
                action="drill",
                result="success" if r.ok and ended == r.live else "failed",
                run_id=self.run_id,
                previous=facts[hp.name].current,
                started=self.began,
                ended=now,
                drill=drill,
            )
            return scripts.finish(
                hp.layout,
                self.run_id,
                history=[record.to_json()],
                prune=[],
                sudo=self.back.playbook.cleanup_sudo,
            )

        return script
