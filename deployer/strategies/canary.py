"""Canary analysis: while a canary step bakes, sample the canary hosts (new release) and the
baseline hosts (still on the old release) side by side, then judge the numbers with the
playbook's rules. `summarize` and `judge` are pure; `bake` does the sampling.

A request is an error when it gets no answer in time or an HTTP status of 500 or more.
Latencies are those of answered requests. Each sampled host runs one request every
`interval` seconds for the whole bake, through its own SSH connection (or from here with
`via: local`), so both groups are measured the same way at the same time.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from deployer.config.model import Analysis, Health
from deployer.events import CanaryAnalyzed, CanaryGroup, CanaryRule
from deployer.health import Probe, http_probe, parse_url
from deployer.plan import HostPlan
from deployer.remote.transport import Channel
from deployer.runner import Runner

# Hosts sampled per group: enough for the statistics, few enough to keep the bake light on
# big fleets (each sampled host holds one worker thread for the whole bake).
MAX_SAMPLED_PER_GROUP = 8


@dataclass(frozen=True)
class Sample:
    host: str
    error: bool
    latency: float | None  # seconds; None when there was no answer
    status: int | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(hosts: Sequence[str], samples: Sequence[Sample]) -> CanaryGroup:
    answered = [s.latency * 1000 for s in samples if s.latency is not None]
    errors = sum(1 for s in samples if s.error)
    return CanaryGroup(
        hosts=tuple(hosts),
        samples=len(samples),
        errors=errors,
        error_rate=100 * errors / len(samples) if samples else None,
        p50_ms=percentile(answered, 50) if answered else None,
        p95_ms=percentile(answered, 95) if answered else None,
    )


def judge(
    rules: Analysis, canary: CanaryGroup, baseline: CanaryGroup | None
) -> tuple[bool, str, tuple[CanaryRule, ...]]:
    """(promote, why, each rule's result). Without a baseline (no host left on the old
    release) the comparison rules are skipped and only absolute ones decide."""
    checked: list[CanaryRule] = []
    floor = rules.latency_floor_ms

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    if rules.max_error_rate is not None:
        ok = canary.error_rate is not None and canary.error_rate <= rules.max_error_rate
        checked.append(
            CanaryRule(
                "error rate",
                pct(canary.error_rate),
                "",
                f"<= {rules.max_error_rate:g}%",
                ok,
            )
        )
    if rules.max_error_rate_increase is not None:
        if baseline is None or baseline.error_rate is None:
            checked.append(
                CanaryRule("error rate vs baseline", pct(canary.error_rate), "-", "", None)
            )
        else:
            limit = baseline.error_rate + rules.max_error_rate_increase
            ok = canary.error_rate is not None and canary.error_rate <= limit
            checked.append(
                CanaryRule(
                    "error rate vs baseline",
                    pct(canary.error_rate),
                    pct(baseline.error_rate),
                    f"<= baseline + {rules.max_error_rate_increase:g} pt ({limit:.1f}%)",
                    ok,
                )
            )
    for name, ratio, mine, theirs in (
        ("p50 latency", rules.max_p50_ratio, canary.p50_ms, baseline.p50_ms if baseline else None),
        ("p95 latency", rules.max_p95_ratio, canary.p95_ms, baseline.p95_ms if baseline else None),
    ):
        if ratio is None:
            continue
        if theirs is None:
            checked.append(CanaryRule(name, ms(mine), "-", "", None))
            continue
        limit = ratio * max(theirs, floor)
        ok = mine is not None and mine <= limit
        checked.append(
            CanaryRule(name, ms(mine), ms(theirs), f"<= {ratio:g} x baseline ({limit:.0f} ms)", ok)
        )

    short = [
        f"{group} has {g.samples} sample(s), fewer than min_samples {rules.min_samples}"
        for group, g in (("canary", canary), ("baseline", baseline))
        if g is not None and g.samples < rules.min_samples
    ]
    if short:
        return False, "inconclusive: " + "; ".join(short), tuple(checked)
    failed = [rule.name for rule in checked if rule.ok is False]
    if failed:
        return False, "failed: " + ", ".join(failed), tuple(checked)
    if baseline is None:
        return (
            True,
            "passed (no baseline left on the old release: absolute rules only)",
            tuple(checked),
        )
    return True, "passed", tuple(checked)


def bake(
    runner: Runner,
    health: Health,
    rules: Analysis,
    *,
    step: int,
    steps: int,
    seconds: float,
    canary: Sequence[HostPlan],
    baseline: Sequence[HostPlan],
) -> CanaryAnalyzed:
    """Sample both groups for `seconds`, judge, and emit the analysis; the caller acts on
    `promote`. Stops early (judging what it has) when the run is cancelled."""
    canary = list(canary)[:MAX_SAMPLED_PER_GROUP]
    baseline = list(baseline)[:MAX_SAMPLED_PER_GROUP]
    via = rules.via or (health.http.via if health.http else "ssh")
    deadline = time.monotonic() + seconds
    cancelled = runner.cancelled

    def sample_host(hp: HostPlan) -> list[Sample]:
        url = hp.analysis_url or hp.health_url
        assert url is not None  # the plan refuses a canary without a URL to sample
        target = parse_url(url)

        def connect() -> Channel | socket.socket:
            if via == "local":
                return socket.create_connection((target.address, target.port), rules.timeout)
            return runner.transport.open_tcp(
                hp.host, target.address, target.port, timeout=rules.timeout
            )

        taken: list[Sample] = []
        while not cancelled.is_set():
            started = time.monotonic()
            if started >= deadline:
                break
            probe = http_probe(connect, target, expect_status=200, expect_version=None)
            taken.append(_sample(hp.name, probe, rules.timeout))
            cancelled.wait(max(0.0, rules.interval - (time.monotonic() - started)))
        return taken

    results = runner.each([*canary, *baseline], sample_host)
    taken = {name: r for name, r in results.items() if isinstance(r, list)}
    canary_stats = summarize(
        [h.name for h in canary], [s for h in canary for s in taken.get(h.name, [])]
    )
    baseline_stats = (
        summarize([h.name for h in baseline], [s for h in baseline for s in taken.get(h.name, [])])
        if baseline
        else None
    )
    promote, reason, checked = judge(rules, canary_stats, baseline_stats)
    event = CanaryAnalyzed(
        step=step,
        steps=steps,
        bake=seconds,
        canary=canary_stats,
        baseline=baseline_stats,
        rules=checked,
        promote=promote,
        reason=reason,
    )
    runner.bus.emit(event)
    return event


def _sample(host: str, probe: Probe, timeout: float) -> Sample:
    if probe.status is None:  # no (HTTP) answer: refused, reset or timed out
        return Sample(host, True, None)
    return Sample(host, probe.status >= 500, min(probe.latency, timeout), probe.status)
