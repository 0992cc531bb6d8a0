"""The read-only operations: each host's status, the fleet's history, delivery statistics, and
the forced unlock. They read what the hosts recorded and change nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deployer.api.project import Loaded
from deployer.api.wiring import (
    Options,
    event_bus,
    make_runner,
    read_only_plans,
)
from deployer.delivery import ROLLBACK_WINDOW, Stats, compute, merge_runs
from deployer.history import Run, runs
from deployer.inspect import HostStatus, gather, gather_history, with_colors
from deployer.locking import force_unlock


def delivery_stats(
    loaded: Loaded,
    options: Options,
    *,
    since: timedelta | None = None,
    rollback_window: timedelta = ROLLBACK_WINDOW,
    now: datetime | None = None,
) -> tuple[Stats, dict[str, str]]:
    """The four DORA keys from every host's own records (`deployer.delivery`), and the hosts
    that could not be read."""
    bus = event_bus(options, None)
    runner = make_runner(loaded, options, bus)
    try:
        found = gather_history(runner, read_only_plans(loaded))
    finally:
        runner.close()
    records = {h: r for h, r in found.items() if not isinstance(r, BaseException)}
    errors = {h: str(r) for h, r in found.items() if isinstance(r, BaseException)}
    stats = compute(
        merge_runs(records),
        now=now or datetime.now(UTC).replace(microsecond=0),
        since=since,
        rollback_window=rollback_window,
    )
    return stats, errors


def status(loaded: Loaded, options: Options, *, health: bool = True) -> list[HostStatus]:
    """Each host's state; for a blue-green playbook each row also carries the host's color
    and the live color its load balancer recorded."""
    bus = event_bus(options, None)
    runner = make_runner(loaded, options, bus)
    try:
        rows = gather(
            runner,
            read_only_plans(loaded),
            loaded.playbook.health if health else None,
            loaded.playbook.resources,
        )
    finally:
        runner.close()
    bg = loaded.playbook.strategy.blue_green
    if bg is None:
        return rows
    return with_colors(rows, bg.colors, loaded.inventory, bg.load_balancer.hosts)


def history(loaded: Loaded, options: Options) -> tuple[list[Run], dict[str, str]]:
    """The fleet's audit trail from the hosts themselves: every recorded run, oldest first,
    with each host's result; and the hosts that could not be read, with why."""
    bus = event_bus(options, None)
    runner = make_runner(loaded, options, bus)
    try:
        found = gather_history(runner, read_only_plans(loaded))
    finally:
        runner.close()
    records = {h: r for h, r in found.items() if not isinstance(r, BaseException)}
    errors = {h: str(r) for h, r in found.items() if isinstance(r, BaseException)}
    return runs(records), errors


def unlock(loaded: Loaded, options: Options) -> dict[str, object]:
    bus = event_bus(options, None)
    runner = make_runner(loaded, options, bus)
    try:
        return dict(force_unlock(runner, read_only_plans(loaded)))
    finally:
        runner.close()
