"""Health judging and the consecutive-success rule."""

import itertools
from collections.abc import Callable

import pytest

from deployer.health import (
    FAST_WINDOW,
    Probe,
    judge_http,
    parse_url,
    probe_delay,
    wait_until_healthy,
)

OK = (
    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
    b'{"status": "healthy", "version": "R1"}'
)


def test_judge_status_and_version():
    assert judge_http(OK, expect_status=200, expect_version="R1").ok
    wrong = judge_http(OK, expect_status=200, expect_version="R2")
    assert not wrong.ok and "'R1'" in wrong.detail and "'R2'" in wrong.detail
    bad = judge_http(
        b'HTTP/1.0 500 Internal\r\n\r\n{"status": "unhealthy"}',
        expect_status=200,
        expect_version=None,
    )
    assert not bad.ok and "500" in bad.detail and "unhealthy" in bad.detail
    assert not judge_http(b"garbage", expect_status=200, expect_version=None).ok


def test_parse_url():
    t = parse_url("http://127.0.0.21:8000/health?x=1")
    assert (t.address, t.port, t.path, t.host_header) == (
        "127.0.0.21",
        8000,
        "/health?x=1",
        "127.0.0.21:8000",
    )


def test_needs_consecutive_successes_flapping_never_passes():
    flapping = itertools.cycle([Probe(True, "200"), Probe(False, "500")])
    outcome = wait_until_healthy(lambda: next(flapping), successes=2, interval=0.001, deadline=0.2)
    assert not outcome.ok
    assert outcome.last.detail in ("200", "500")
    assert outcome.attempts > 2
    # Whichever probe came last, the reason it is unhealthy is kept for the error message.
    assert outcome.last_failure is not None and outcome.last_failure.detail == "500"


def test_slow_start_then_healthy():
    answers = iter([Probe(False, "refused")] * 3 + [Probe(True, "200")] * 3)
    outcome = wait_until_healthy(lambda: next(answers), successes=3, interval=0.001, deadline=5)
    assert outcome.ok and outcome.attempts == 6


def test_last_response_shown_on_failure():
    outcome = wait_until_healthy(
        lambda: Probe(False, "HTTP/1.0 503 busy"), successes=1, interval=0.001, deadline=0.05
    )
    assert not outcome.ok and outcome.last.detail == "HTTP/1.0 503 busy"


class _Clock:
    """Simulated time for the probe schedule: sleeping advances it; probes take no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.probes: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def app(self, healthy_at: float, *, flaps_at: float | None = None) -> Callable[[], Probe]:
        def probe() -> Probe:
            self.probes.append(round(self.now, 6))
            up = self.now >= healthy_at and not (flaps_at is not None and self.now >= flaps_at)
            return Probe(up, "HTTP/1.0 200" if up else "no response: connection refused")

        return probe


def _wait(clock: _Clock, probe: Callable[[], Probe], **kwargs: float) -> object:
    settings = {"successes": 1, "interval": 0.2, "deadline": 30.0, **kwargs}
    return wait_until_healthy(
        probe,
        clock=lambda: clock.now,
        sleep=clock.sleep,
        **settings,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("healthy_at", [0.0, 0.05, 1.0, 4.99, 5.0, 9.9])
def test_a_restarting_app_is_seen_healthy_at_most_one_interval_late(healthy_at: float) -> None:
    # Issue 18: a batch should cost the app's own restart-to-healthy time and little more.
    # The old schedule doubled the wait up to 4x interval, so an app healthy at 5.0 s was
    # seen at up to 5.0 + 4 x interval.
    clock = _Clock()
    outcome = _wait(clock, clock.app(healthy_at))
    assert outcome.ok  # type: ignore[attr-defined]
    assert healthy_at <= clock.probes[-1] <= healthy_at + 0.2 + 1e-9
    assert clock.probes[0] == 0.0  # the first probe right away, no initial delay
    gaps = [b - a for a, b in zip(clock.probes, clock.probes[1:], strict=False)]
    assert all(abs(gap - 0.2) < 1e-9 for gap in gaps)


def test_each_extra_consecutive_success_costs_one_interval() -> None:
    clock = _Clock()
    outcome = _wait(clock, clock.app(3.0), successes=3)
    assert outcome.ok  # type: ignore[attr-defined]
    first_pass = next(t for t in clock.probes if t >= 3.0)
    assert clock.probes[-1] == pytest.approx(first_pass + 2 * 0.2)


def test_a_host_that_stays_down_is_probed_less_often_and_last_at_the_deadline() -> None:
    clock = _Clock()
    outcome = _wait(clock, clock.app(float("inf")), deadline=30.0)
    assert not outcome.ok  # type: ignore[attr-defined]
    gaps = [round(b - a, 6) for a, b in zip(clock.probes, clock.probes[1:], strict=False)]
    fast = [g for t, g in zip(clock.probes, gaps, strict=False) if t < FAST_WINDOW]
    assert set(fast) == {0.2}
    assert max(gaps) == pytest.approx(0.8)  # 4x interval at most
    assert clock.probes[-1] == pytest.approx(30.0)  # one last look at the deadline
    assert len(clock.probes) < 100  # against 150 at a constant 0.2 s


def test_probe_delay_schedule() -> None:
    assert probe_delay(0.5, streak=0, waited=0.0) == 0.5
    assert probe_delay(0.5, streak=0, waited=FAST_WINDOW + 1) == 1.0
    assert probe_delay(0.5, streak=0, waited=2 * FAST_WINDOW + 1) == 2.0
    assert probe_delay(0.5, streak=2, waited=60.0) == 0.5  # confirming never backs off
