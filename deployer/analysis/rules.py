"""Prometheus' numbers judged by the canary's existing rules
(`deployer.strategies.canary.judge`): a group's requests stand where the synthetic probe
counts its samples, so `min_samples` is the least number of real requests a group must have
served. Pure."""

from __future__ import annotations

from deployer.analysis.prometheus import GroupNumbers
from deployer.config.model import Analysis
from deployer.events import CanaryGroup, CanaryRule
from deployer.strategies.canary import judge

__all__ = ["as_group", "judge_numbers"]


def as_group(names: tuple[str, ...], numbers: GroupNumbers) -> CanaryGroup:
    """`names`: the inventory names shown; `numbers` may carry addresses too."""
    requests = round(numbers.requests)
    errors = min(requests, round(numbers.errors))
    return CanaryGroup(
        hosts=names,
        samples=requests,
        errors=errors,
        error_rate=(
            min(100.0, 100 * numbers.errors / numbers.requests) if numbers.requests > 0 else None
        ),
        p50_ms=None if numbers.p50_seconds is None else numbers.p50_seconds * 1000,
        p95_ms=None if numbers.p95_seconds is None else numbers.p95_seconds * 1000,
    )


def judge_numbers(
    rules: Analysis, canary: CanaryGroup, baseline: CanaryGroup | None
) -> tuple[bool, str, tuple[CanaryRule, ...]]:
    promote, reason, checked = judge(rules, canary, baseline)
    return promote, reason.replace(" sample(s), fewer than", " request(s), fewer than"), checked
