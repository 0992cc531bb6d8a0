"""Canary planning and analysis: the step ladder, the statistics and the promotion rules."""

from __future__ import annotations

import io

import pytest

from deployer.config.model import Analysis
from deployer.events import CanaryAnalyzed, CanaryGroup
from deployer.plan import canary_batches
from deployer.reporters.terminal import TerminalReporter
from deployer.strategies.canary import Sample, judge, percentile, summarize

HOSTS = [f"web{i}" for i in range(1, 11)]


@pytest.mark.parametrize(
    ("steps", "sizes"),
    [
        ((1,), [1, 9]),  # one canary host, then the rest
        ((1, "50%"), [1, 4, 5]),
        (("10%", "50%", "100%"), [1, 4, 5]),
        (("5%",), [1, 9]),  # rounds down but never below one host
        ((1, 1, "10%", 3), [1, 2, 7]),  # steps that add no host are dropped
        ((20,), [10]),  # a step beyond the fleet takes every host at once
    ],
)
def test_canary_steps_are_cumulative_shares_of_the_fleet(
    steps: tuple[int | str, ...], sizes: list[int]
) -> None:
    batches = canary_batches(HOSTS, steps)
    assert [len(b) for b in batches] == sizes
    assert [h for b in batches for h in b] == HOSTS  # every host once, in order


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile([7.0], 95) == 7


def test_summarize_counts_timeouts_and_5xx_as_errors_and_times_answers_only() -> None:
    samples = [
        Sample("a", False, 0.010, 200),
        Sample("a", False, 0.030, 200),
        Sample("b", True, 0.020, 503),
        Sample("b", True, None),  # no answer: an error without a latency
    ]
    group = summarize(["a", "b"], samples)
    assert group.samples == 4
    assert group.errors == 2
    assert group.error_rate == 50
    assert group.p50_ms == pytest.approx(20)
    assert group.p95_ms == pytest.approx(30)


def group(samples: int = 50, errors: int = 0, p50: float = 5, p95: float = 10) -> CanaryGroup:
    return CanaryGroup(
        hosts=("h",),
        samples=samples,
        errors=errors,
        error_rate=100 * errors / samples,
        p50_ms=p50,
        p95_ms=p95,
    )


RULES = Analysis(min_samples=10, max_error_rate_increase=1, max_p95_ratio=1.5, latency_floor_ms=20)


def test_a_canary_like_its_baseline_is_promoted() -> None:
    promote, reason, rules = judge(RULES, group(p95=25), group(p95=20))
    assert promote, reason
    assert reason == "passed"
    assert [(r.name, r.ok) for r in rules] == [
        ("error rate vs baseline", True),
        ("p95 latency", True),
    ]


def test_more_errors_than_baseline_plus_the_allowance_stop_the_canary() -> None:
    promote, reason, rules = judge(RULES, group(errors=5), group(errors=0))  # 10% vs 0%
    assert not promote
    assert reason == "failed: error rate vs baseline"
    assert rules[0].canary == "10.0%" and rules[0].baseline == "0.0%"


def test_a_slow_canary_is_stopped_by_the_p95_ratio() -> None:
    promote, reason, rules = judge(RULES, group(p95=310), group(p95=40))
    assert not promote
    assert reason == "failed: p95 latency"
    assert rules[1].limit == "<= 1.5 x baseline (60 ms)"


def test_the_latency_floor_keeps_noise_from_failing_a_canary() -> None:
    # 3 ms against 1 ms is three times slower, and meaningless: both are under the floor.
    promote, _, _ = judge(RULES, group(p95=3), group(p95=1))
    assert promote


def test_too_few_samples_is_inconclusive_and_does_not_promote() -> None:
    promote, reason, _ = judge(RULES, group(samples=4), group())
    assert not promote
    assert reason == "inconclusive: canary has 4 sample(s), fewer than min_samples 10"


def test_without_a_baseline_only_absolute_rules_decide() -> None:
    rules = Analysis(max_error_rate=5, max_error_rate_increase=1, max_p95_ratio=1.5)
    promote, _, checked = judge(rules, group(errors=1), None)  # 2%
    assert promote
    assert [(r.name, r.ok) for r in checked] == [
        ("error rate", True),
        ("error rate vs baseline", None),
        ("p95 latency", None),
    ]
    promote, reason, _ = judge(rules, group(errors=5), None)  # 10%
    assert not promote and reason == "failed: error rate"


def test_the_terminal_prints_the_analysis_as_a_table() -> None:
    canary, baseline = group(p95=310), group(p95=40)
    promote, reason, rules = judge(RULES, canary, baseline)
    stream = io.StringIO()
    TerminalReporter(stream)(
        CanaryAnalyzed(
            step=1,
            steps=3,
            bake=6,
            canary=canary,
            baseline=baseline,
            rules=rules,
            promote=promote,
            reason=reason,
        )
    )
    assert stream.getvalue().splitlines() == [
        "canary analysis, step 1/3 (6s bake):",
        "                          canary  baseline",
        "  hosts                        1         1",
        "  samples                     50        50",
        "  error rate vs baseline    0.0%      0.0%  ok    <= baseline + 1 pt (1.0%)",
        "  p95 latency             310 ms     40 ms  FAIL  <= 1.5 x baseline (60 ms)",
        "  -> roll back: failed: p95 latency",
    ]
