"""The post-deploy watch: once the last batch is healthy, keep looking at the whole fleet's
real traffic in Prometheus for `watch.duration`, every `watch.interval`, over the last
`watch.window` seconds, and judge it against the fleet's own numbers over the same duration
before the first switch. Returns the verdict; the flow rolls back. Ctrl-C ends the watch
and keeps the release (the deploy itself succeeded). Never changes a host."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from deployer.analysis.prometheus import Prometheus
from deployer.analysis.rules import as_group, judge_numbers
from deployer.analysis.step import instance_names, query_with_policy
from deployer.config.model import Watch
from deployer.events import CanaryGroup, CanaryRule, Notice, WatchChecked
from deployer.plan import DeployPlan, HostPlan
from deployer.runner import Runner

__all__ = ["WatchResult", "watch_fleet"]


@dataclass(frozen=True)
class WatchResult:
    ok: bool  # False: roll the fleet back
    reason: str
    interrupted: bool = False


def watch_fleet(
    plan: DeployPlan,
    runner: Runner,
    watch: Watch,
    *,
    hosts: Sequence[HostPlan],
    switched_at: float,
    previous: Sequence[str] = (),
    baseline_hosts: Sequence[HostPlan] | None = None,
) -> WatchResult:
    """Watch `hosts`; the baseline is `baseline_hosts` (default: the same hosts) over
    `watch.duration` before `switched_at` (blue-green: the color that served until then)."""
    bus = runner.bus
    client = Prometheus(watch.metrics, plan.secrets)
    names = tuple(hp.name for hp in hosts)
    instances = instance_names(hosts)
    before_hosts = hosts if baseline_hosts is None else baseline_hosts
    before_names = tuple(hp.name for hp in before_hosts)
    policy = watch.on_metrics_error
    started = time.time()
    bus.emit(
        Notice(
            level="info",
            text=f"watching {len(hosts)} host(s) on {plan.release_id} for {watch.duration:g}s"
            f" (every {watch.interval:g}s, Prometheus); Ctrl-C ends the watch and keeps"
            " the release",
        )
    )

    def measure(group: str, window: float, at: float) -> CanaryGroup:
        numbers = client.group(
            group=group,
            hosts=instances if group == "fleet" else instance_names(before_hosts),
            window_seconds=window,
            at=at,
            release=plan.release_id,
            previous=previous,
        )
        return as_group(names if group == "fleet" else before_names, numbers)

    def emit(
        fleet: CanaryGroup | None,
        verdict: str,
        reason: str,
        *,
        window: float = 0.0,
        rules: Sequence[CanaryRule] = (),
        final: bool = False,
    ) -> None:
        bus.emit(
            WatchChecked(
                elapsed=round(time.time() - started, 1),
                duration=watch.duration,
                window=round(window, 1),
                fleet=fleet or CanaryGroup(names, 0, 0, None, None, None),
                baseline=baseline,
                rules=tuple(rules),
                verdict=verdict,
                reason=reason,
                final=final,
            )
        )

    baseline: CanaryGroup | None = None
    before = query_with_policy(
        runner,
        bus,
        policy,
        watch.max_pause,
        lambda: measure("baseline", watch.duration, switched_at),
        what="watch (baseline before the first switch)",
    )
    if isinstance(before, str):
        if policy != "ignore":
            emit(None, "error", before, final=True)
            return WatchResult(False, f"post-deploy watch: {before}")
    else:
        baseline = before
        errors = "-" if before.error_rate is None else f"{before.error_rate:.1f}%"
        bus.emit(
            Notice(
                level="info",
                text=f"watch baseline ({watch.duration:g}s before the first switch, at"
                f" {switched_at:.0f}): {before.samples} requests, errors {errors}",
            )
        )
    last = "inconclusive: the watch judged nothing"
    try:
        while (left := watch.duration - (time.time() - started)) > 0:
            if runner.cancelled.wait(min(watch.interval, left)):
                raise KeyboardInterrupt
            at = time.time()
            window = max(1.0, min(watch.window, at - started))
            seen = query_with_policy(
                runner,
                bus,
                policy,
                watch.max_pause,
                partial(measure, "fleet", window, at),
                what=f"watch at {at - started:.0f}s",
            )
            if isinstance(seen, str):
                if policy == "ignore":
                    emit(None, "error", seen, window=window)
                    continue
                emit(None, "error", seen, window=window, final=True)
                return WatchResult(False, f"post-deploy watch: {seen}")
            ok, reason, checked = judge_numbers(watch.rules, seen, baseline)
            verdict = "ok" if ok else reason.split(":", 1)[0]
            final = verdict == "failed" or watch.duration - (time.time() - started) <= 0
            emit(seen, verdict, reason, window=window, rules=checked, final=final)
            if verdict == "failed":
                return WatchResult(
                    False,
                    f"post-deploy watch {reason} at {at - started:.0f}s of {watch.duration:g}s",
                )
            last = reason
    except KeyboardInterrupt:
        bus.emit(
            Notice(
                level="warning",
                text=f"watch ended by an interrupt after {time.time() - started:.0f}s:"
                f" {plan.release_id} stays on every host",
            )
        )
        return WatchResult(True, "interrupted", interrupted=True)
    if last.startswith("inconclusive"):
        bus.emit(
            Notice(
                level="warning",
                text=f"the watch stayed {last}; {plan.release_id} is kept",
            )
        )
    return WatchResult(True, last)
