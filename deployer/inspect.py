"""Read-only views of a fleet: each host's current and previous release, health, lock holder
and drift (`status`), and the releases present with their history (`releases`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from deployer.config.model import Health
from deployer.errors import DeployerError
from deployer.facts import HostFacts, parse_facts
from deployer.history import release_stack, rollback_target
from deployer.plan import HostPlan
from deployer.probe import probe_once
from deployer.remote import scripts
from deployer.runner import Runner


@dataclass(frozen=True)
class HostStatus:
    host: str
    current: str | None
    previous: str | None  # the rollback target
    healthy: bool | None  # None: not checked (unreachable or no check)
    health_detail: str
    lock: str | None  # holder description
    releases: tuple[str, ...]
    successful: tuple[str, ...]  # from history, oldest first
    error: str | None = None
    drift: bool = False


def gather(runner: Runner, hosts: Sequence[HostPlan], health: Health | None) -> list[HostStatus]:
    """Ask every host (read-only); `health` None skips the health probe."""

    def one(hp: HostPlan) -> HostStatus:
        facts: HostFacts = parse_facts(
            runner.step(hp.host, scripts.prepare(hp.layout, lock_info=None)).output
        )
        healthy: bool | None = None
        detail = ""
        if health is not None and facts.current:
            probe = probe_once(runner, health, hp, None)
            healthy, detail = probe.ok, probe.detail
        return HostStatus(
            host=hp.name,
            current=facts.current,
            previous=rollback_target(facts.history, facts.current),
            healthy=healthy,
            health_detail=detail,
            lock=facts.lock_holder.describe() if facts.lock_holder else None,
            releases=facts.releases,
            successful=tuple(release_stack(facts.history)),
        )

    results = runner.each(hosts, one)
    statuses = []
    for hp in hosts:
        result = results[hp.name]
        if isinstance(result, DeployerError):
            statuses.append(
                HostStatus(hp.name, None, None, None, "", None, (), (), error=str(result))
            )
        else:
            statuses.append(result)
    return mark_drift(statuses)


def mark_drift(statuses: list[HostStatus]) -> list[HostStatus]:
    """Flag hosts whose current release differs from the fleet's most common one."""
    counts = Counter(s.current for s in statuses if s.error is None)
    if len(counts) <= 1:
        return statuses
    majority = counts.most_common(1)[0][0]
    out = []
    for s in statuses:
        drift = s.error is None and s.current != majority
        out.append(HostStatus(**{**s.__dict__, "drift": drift}))
    return out
