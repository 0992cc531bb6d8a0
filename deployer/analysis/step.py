"""One canary step's analysis from every source the playbook names: the synthetic probe
(`deployer.strategies.canary.bake`) and/or Prometheus, each judged by the same rules and
emitted as its own `CanaryAnalyzed`. A Prometheus failure follows `on_metrics_error`; it
never promotes silently: `ignore` says so in a warning and in the verdict."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from deployer.analysis.prometheus import MetricsError, Prometheus
from deployer.analysis.rules import as_group, judge_numbers
from deployer.config.model import Analysis
from deployer.events import CanaryAnalyzed, CanaryGroup, CanaryRule, EventBus, Notice
from deployer.plan import DeployPlan, HostPlan
from deployer.runner import Runner
from deployer.strategies.canary import bake

__all__ = ["analyze_step", "instance_names", "query_with_policy"]

T = TypeVar("T")
PAUSE_RETRY = 2.0  # seconds between attempts while on_metrics_error: pause waits


def instance_names(hosts: Sequence[HostPlan]) -> list[str]:
    """Every name the hosts may carry in an `instance` label: inventory name and address."""
    return [name for hp in hosts for name in (hp.name, hp.host.address)]


def analyze_step(
    plan: DeployPlan,
    runner: Runner,
    rules: Analysis,
    *,
    step: int,
    steps: int,
    seconds: float,
    canary: Sequence[HostPlan],
    baseline: Sequence[HostPlan],
    previous: Sequence[str] = (),
) -> list[CanaryAnalyzed]:
    """Bake `seconds`, then judge. The verdicts, one per source; the caller promotes only
    when all of them do. Returns early (what it has) when the run is cancelled."""
    started = time.time()
    verdicts: list[CanaryAnalyzed] = []
    if rules.probes:
        verdicts.append(
            bake(
                runner,
                plan.playbook.health,
                rules,
                step=step,
                steps=steps,
                seconds=seconds,
                canary=canary,
                baseline=baseline,
            )
        )
    else:
        runner.cancelled.wait(seconds)
    if rules.metrics is None or runner.cancelled.is_set():
        return verdicts
    source = rules.metrics
    client = Prometheus(source, plan.secrets)
    at = time.time()
    window = max(1.0, at - started)
    names = (tuple(h.name for h in canary), tuple(h.name for h in baseline))

    def measure() -> tuple[CanaryGroup, CanaryGroup | None]:
        mine = client.group(
            group="canary",
            hosts=instance_names(canary),
            window_seconds=window,
            at=at,
            release=plan.release_id,
            previous=previous,
        )
        theirs = (
            client.group(
                group="baseline",
                hosts=instance_names(baseline),
                window_seconds=window,
                at=at,
                release=plan.release_id,
                previous=previous,
            )
            if baseline
            else None
        )
        return as_group(names[0], mine), as_group(names[1], theirs) if theirs else None

    outcome = query_with_policy(
        runner,
        runner.bus,
        rules.on_metrics_error,
        rules.max_pause,
        measure,
        what=f"canary step {step}/{steps}",
    )
    if isinstance(outcome, str):  # no numbers: the policy's verdict, the groups as hosts only
        groups: tuple[CanaryGroup, CanaryGroup | None] = (
            CanaryGroup(names[0], 0, 0, None, None, None),
            CanaryGroup(names[1], 0, 0, None, None, None) if baseline else None,
        )
        promote, reason = rules.on_metrics_error == "ignore", outcome
        checked: tuple[CanaryRule, ...] = ()
    else:
        groups = outcome
        promote, reason, checked = judge_numbers(rules, *groups)
    verdict = CanaryAnalyzed(
        step=step,
        steps=steps,
        bake=round(window, 1),
        canary=groups[0],
        baseline=groups[1],
        rules=checked,
        promote=promote,
        reason=reason,
        source="prometheus",
    )
    runner.bus.emit(verdict)
    verdicts.append(verdict)
    return verdicts


def query_with_policy(
    runner: Runner,
    bus: EventBus,
    policy: str,
    max_pause: float,
    measure: Callable[[], T],
    *,
    what: str,
) -> T | str:
    """`measure()`'s result, or, when Prometheus fails, the reason the policy gives for
    judging without it (rollback and ignore at once; pause after waiting up to `max_pause`
    seconds for Prometheus to answer again)."""
    try:
        return measure()
    except MetricsError as exc:
        error = exc
    if policy == "pause":
        bus.emit(
            Notice(
                level="warning",
                text=f"{what}: {error.message}; on_metrics_error: pause: waiting up to"
                f" {max_pause:g}s for it, then rolling back",
            )
        )
        deadline = time.monotonic() + max_pause
        while time.monotonic() < deadline and not runner.cancelled.wait(PAUSE_RETRY):
            try:
                result = measure()
            except MetricsError as exc:
                error = exc
                continue
            bus.emit(Notice(level="info", text=f"{what}: Prometheus answers again; judging"))
            return result
        return f"metrics unavailable for {max_pause:g}s (on_metrics_error: pause): {error.message}"
    if policy == "ignore":
        bus.emit(
            Notice(
                level="warning",
                text=f"{what}: {error.message}; on_metrics_error: ignore: NOT judged on"
                " real traffic",
            )
        )
        return f"not judged: metrics unavailable (on_metrics_error: ignore): {error.message}"
    bus.emit(Notice(level="error", text=f"{what}: {error.message}"))
    return f"metrics unavailable (on_metrics_error: rollback): {error.message}"
