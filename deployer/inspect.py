"""Read-only views of a fleet: each host's current and previous release, health, lock holder
and drift (`status`), the releases present with their history (`releases`), and every host's
recorded runs (`history`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from deployer.config.model import Health, Inventory, Resources
from deployer.errors import DeployerError
from deployer.facts import HostFacts, parse_facts
from deployer.history import (
    Record,
    recorded_live_color,
    release_stack,
    rollback_target,
)
from deployer.plan import HostPlan
from deployer.probe import probe_once
from deployer.remote import scripts
from deployer.resources import HostResources
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
    recorded_live: str | None = None  # blue-green: the live color this host's history records
    color: str | None = None  # blue-green: this host's color (None: a load balancer)
    live_color: str | None = None  # blue-green: the live color its load balancer recorded
    foreign: tuple[str, ...] = ()  # entries in deploy_to this tool did not create ("kind name")
    resources: HostResources | None = None  # load, memory, disk, inodes, the app's processes


def gather(
    runner: Runner,
    hosts: Sequence[HostPlan],
    health: Health | None,
    resources: Resources | None = None,
) -> list[HostStatus]:
    """Ask every host (read-only); `health` None skips the health probe. `resources` says
    where the app's processes are found."""
    resources = resources or Resources()

    def one(hp: HostPlan) -> HostStatus:
        script = scripts.prepare(
            hp.layout,
            lock_info=None,
            pidfile=resources.pidfile,
            systemd_unit=resources.systemd_unit,
        )
        facts: HostFacts = parse_facts(runner.step(hp.host, script).output)
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
            recorded_live=recorded_live_color(facts.history),
            foreign=tuple(f"{kind} {name}" for kind, name in facts.foreign),
            resources=facts.resources,
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


def gather_history(
    runner: Runner, hosts: Sequence[HostPlan]
) -> dict[str, tuple[Record, ...] | DeployerError]:
    """Each host's recorded runs (the last 500, as the prepare step reads them), read-only."""

    def one(hp: HostPlan) -> tuple[Record, ...]:
        output = runner.step(hp.host, scripts.prepare(hp.layout, lock_info=None)).output
        return parse_facts(output).history

    results = runner.each(hosts, one)
    return {hp.name: results[hp.name] for hp in hosts}


def with_colors(
    statuses: list[HostStatus], colors: Sequence[str], inventory: Inventory, lb: str
) -> list[HostStatus]:
    """Blue-green: each row gets its host's color and the live color the load balancer host(s)
    recorded. Drift is judged within each color: two colors on two releases is the point."""
    lb_names = (
        {lb} if any(h.name == lb for h in inventory.hosts) else set(inventory.groups.get(lb, ()))
    )
    live = {s.recorded_live for s in statuses if s.host in lb_names and s.error is None}
    live_color = live.pop() if len(live) == 1 else None
    out = []
    for s in statuses:
        color = next((c for c in colors if s.host in inventory.groups.get(c, ())), None)
        out.append(replace(s, color=color, live_color=live_color, drift=False))
    for color in colors:
        marked = mark_drift([s for s in out if s.color == color])
        drifted = {s.host for s in marked if s.drift}
        out = [replace(s, drift=True) if s.host in drifted else s for s in out]
    return out


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
