"""The deploy lock: taken on every selected host, all-or-nothing, together with each host's
facts in the same round trip.

Two deploys racing must not each end up with half the fleet: the first host (the leader) is
locked alone first, so a racing run loses at the leader before it touches any other host.
"""

from __future__ import annotations

from collections.abc import Sequence

from deployer.errors import (
    DeployerError,
    HostKeyError,
    LockHeldError,
    PreflightError,
    RemoteCommandError,
    TransportError,
)
from deployer.events import Notice
from deployer.facts import HostFacts, parse_facts
from deployer.plan import HostPlan
from deployer.remote import scripts
from deployer.runner import Runner, lock_info


def acquire_locks(
    runner: Runner,
    hosts: Sequence[HostPlan],
    run_id: str,
    action: str,
    release: str | None,
    *,
    skip_unreachable: bool = False,
    takeover: str | None = None,
) -> dict[str, HostFacts]:
    """Lock every host and return its facts. With `skip_unreachable`, hosts that cannot be
    reached are left out (and reported) instead of failing the run; a host whose key is
    wrong is never skipped."""
    info = lock_info(run_id, action, release)
    facts: dict[str, HostFacts] = {}
    skipped: dict[str, DeployerError] = {}
    env = _env_hint(hosts)

    def take(hp: HostPlan, baseline: bool = False) -> HostFacts:
        # Only the leader sends its release's file list: the baseline for delta uploads.
        script = scripts.prepare(hp.layout, lock_info=info, baseline=baseline, takeover=takeover)
        try:
            result = runner.step(hp.host, script)
        except RemoteCommandError as exc:
            if exc.remote_exit_code == scripts.EXIT_LOCK_HELD:
                held = parse_facts(exc.output_full)
                holder = held.lock_holder.describe() if held.lock_holder else "held"
                raise LockHeldError(
                    f"{hp.name}: deploy lock at {hp.layout.lock} is {holder}",
                    hint=(
                        "wait for that run to finish; if it is dead, run"
                        f" `invoke unlock --env {env}`"
                    ),
                ) from None
            raise
        return parse_facts(result.output)

    def skippable(error: DeployerError) -> bool:
        return skip_unreachable and _unreachable(error)

    # The leader is locked alone, first; a racing run loses there and touches nothing else.
    rest = list(hosts)
    problems: dict[str, DeployerError] = {}
    while rest and not facts and not problems:
        leader = rest.pop(0)
        outcome = runner.each([leader], lambda hp: take(hp, baseline=True))[leader.name]
        if isinstance(outcome, HostFacts):
            facts[leader.name] = outcome
        elif skippable(outcome):
            skipped[leader.name] = outcome
        else:
            problems[leader.name] = outcome
    if facts and rest:
        for name, outcome in runner.each(rest, take).items():
            if isinstance(outcome, HostFacts):
                facts[name] = outcome
            elif skippable(outcome):
                skipped[name] = outcome
            else:
                problems[name] = outcome
    if not facts and not problems:
        problems = skipped  # nothing reachable at all: that is not a skip
    if problems:
        release_locks(runner, [h for h in hosts if h.name in facts], run_id)
        raise _lock_failure(problems, env)
    for name, error in skipped.items():
        runner.bus.emit(
            Notice(level="warning", text=f"skipping unreachable host {name}: {error.message}")
        )
    return facts


def _unreachable(error: DeployerError) -> bool:
    return isinstance(error, TransportError) and not isinstance(error, HostKeyError)


def _lock_failure(problems: dict[str, DeployerError], env: str) -> DeployerError:
    held = [p for p in problems.values() if isinstance(p, LockHeldError)]
    if held and len(held) == len(problems):
        if len(held) == 1:
            return held[0]
        return LockHeldError(
            "deploy lock held on "
            + ", ".join(sorted(problems))
            + ":\n"
            + "\n".join("  " + p.message for p in held),
            hint=held[0].hint,
        )
    lines = "\n".join(f"  {p}" for p in problems.values())
    return PreflightError(
        f"{len(problems)} host(s) not ready; nothing was changed and no lock is kept:\n{lines}",
        hint=f"bring the host(s) back, or leave them out with --limit '!name' (env {env})",
    )


def release_locks(runner: Runner, hosts: Sequence[HostPlan], run_id: str) -> None:
    """Release our lock (matched by run id) on these hosts; best effort."""
    runner.each(hosts, lambda hp: runner.step(hp.host, scripts.unlock(hp.layout, run_id=run_id)))


def force_unlock(runner: Runner, hosts: Sequence[HostPlan]) -> dict[str, str | DeployerError]:
    """Remove whatever lock is held; returns host -> former holder info ('' if none)."""

    def one(hp: HostPlan) -> str:
        result = runner.step(hp.host, scripts.unlock(hp.layout, run_id=None))
        holder = parse_facts(result.output).lock_holder
        for line in result.output.splitlines():
            if line.startswith(scripts.MARK + "lockinfo"):
                return line.split(" ", 1)[1] if " " in line else "(no info)"
        return "" if holder is None else holder.describe()

    return runner.each(hosts, one)


def _env_hint(hosts: Sequence[HostPlan]) -> str:
    for hp in hosts:
        if "DEPLOY_ENV" in hp.env:
            return hp.env["DEPLOY_ENV"]
    return "ENV"
