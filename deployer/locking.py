"""The deploy lock: taken on every selected host, all-or-nothing, together with each host's
facts in the same round trip.

Two deploys racing must not each end up with half the fleet: the first host (the leader) is
locked alone first, so a racing run loses at the leader before it touches any other host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from deployer.errors import (
    DeployerError,
    HostKeyError,
    LockHeldError,
    PreflightError,
    RemoteCommandError,
    TransportError,
)
from deployer.events import Notice
from deployer.facts import HostFacts, parse_facts, parse_removed_lock
from deployer.plan import HostPlan
from deployer.prunable import find_unremovable
from deployer.remote import scripts
from deployer.runner import Runner, lock_info


@dataclass
class LockOutcome:
    """What taking the lock found: facts of the hosts now locked by us, why the others could
    not be locked, and the unreachable hosts left out with `skip_unreachable`. Hosts in none
    of the three were not contacted (the leader failed first)."""

    facts: dict[str, HostFacts] = field(default_factory=dict)
    problems: dict[str, DeployerError] = field(default_factory=dict)
    skipped: dict[str, DeployerError] = field(default_factory=dict)


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
    outcome = lock_fleet(
        runner,
        hosts,
        run_id,
        action,
        release,
        skip_unreachable=skip_unreachable,
        takeover=takeover,
    )
    if outcome.problems:
        release_locks(runner, [h for h in hosts if h.name in outcome.facts], run_id)
        raise lock_failure(outcome.problems, env_hint(hosts))
    report_skipped(runner, outcome)
    return outcome.facts


def lock_fleet(
    runner: Runner,
    hosts: Sequence[HostPlan],
    run_id: str,
    action: str,
    release: str | None,
    *,
    skip_unreachable: bool = False,
    takeover: str | None = None,
    baseline: bool = False,
    keep_releases: int | None = None,
) -> LockOutcome:
    """Take the lock, leader first, and gather every host's facts in the same round trip.
    With `baseline` (a deploy), the leader also lists its release's files for a delta upload;
    a rollback or a flags push does not need them and skips reading the whole MANIFEST.
    With `keep_releases` (a deploy of `release`), the releases it would prune are searched
    for directories pruning cannot delete (`prunable`), once every host is locked.
    Raises nothing for a host: on problems the caller releases what was taken
    (`release_locks`) and raises `lock_failure(...)`."""
    info = lock_info(run_id, action, release)
    env = env_hint(hosts)
    outcome = LockOutcome()

    def take(hp: HostPlan, leader: bool = False) -> HostFacts:
        # Only the leader sends its release's file list: the baseline for delta uploads.
        script = scripts.prepare(
            hp.layout, lock_info=info, baseline=baseline and leader, takeover=takeover
        )
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
        facts = parse_facts(result.output)
        if facts.stale_lock is not None:
            runner.bus.emit(
                Notice(
                    level="warning",
                    text=f"{hp.name}: took over a stale lock: run"
                    f" {facts.stale_lock.get('run_id', '?')} had recorded its outcome and"
                    f" stopped while cleaning up, over {scripts.STALE_FINISH}s ago",
                )
            )
        return facts

    def sort(name: str, result: HostFacts | DeployerError) -> None:
        if isinstance(result, HostFacts):
            outcome.facts[name] = result
        elif skip_unreachable and _unreachable(result):
            outcome.skipped[name] = result
        else:
            outcome.problems[name] = result

    # The leader is locked alone, first; a racing run loses there and touches nothing else.
    # Meanwhile the other hosts' connections are opened: connecting takes no lock.
    rest = list(hosts)
    ahead = False

    def take_leader(hp: HostPlan) -> HostFacts:
        nonlocal ahead
        if not ahead:  # submitted from the leader's own task, so it never queues behind them
            ahead = True
            runner.connect_ahead([other.host for other in rest])
        return take(hp, leader=True)

    while rest and not outcome.facts and not outcome.problems:
        leader = rest.pop(0)
        sort(leader.name, runner.each([leader], take_leader)[leader.name])
    if outcome.facts and rest:
        for name, result in runner.each(rest, take).items():
            sort(name, result)
    if not outcome.facts and not outcome.problems:
        # Nothing reachable at all: that is not a skip.
        outcome.problems, outcome.skipped = outcome.skipped, {}
    if keep_releases is not None and release is not None and not outcome.problems:
        locked = [hp for hp in hosts if hp.name in outcome.facts]
        try:
            find_unremovable(runner, locked, outcome.facts, release=release, keep=keep_releases)
        except KeyboardInterrupt:  # the caller never saw these locks: give them back here
            release_locks(runner, locked, run_id)
            raise
    return outcome


def report_skipped(runner: Runner, outcome: LockOutcome) -> None:
    for name, error in outcome.skipped.items():
        runner.bus.emit(
            Notice(level="warning", text=f"skipping unreachable host {name}: {error.message}")
        )


def _unreachable(error: DeployerError) -> bool:
    return isinstance(error, TransportError) and not isinstance(error, HostKeyError)


def lock_failure(problems: dict[str, DeployerError], env: str) -> DeployerError:
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
        return parse_removed_lock(
            runner.step(hp.host, scripts.unlock(hp.layout, run_id=None)).output
        )

    return runner.each(hosts, one)


def env_hint(hosts: Sequence[HostPlan]) -> str:
    for hp in hosts:
        if "DEPLOY_ENV" in hp.env:
            return hp.env["DEPLOY_ENV"]
    return "ENV"
