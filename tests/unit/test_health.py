"""Health judging and the consecutive-success rule."""

import itertools
import socket
from collections.abc import Callable

import pytest

from deployer.health import (
    FAST_WINDOW,
    QUICK,
    Probe,
    http_probe,
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

    def app(
        self, healthy_at: float, *, flaps_at: float | None = None, answers: bool = False
    ) -> Callable[[], Probe]:
        """An app healthy from `healthy_at`; before that its port refuses connections, or,
        with `answers`, it answers 503 (listening, warming up)."""

        def probe() -> Probe:
            self.probes.append(round(self.now, 6))
            up = self.now >= healthy_at and not (flaps_at is not None and self.now >= flaps_at)
            if up:
                return Probe(True, "HTTP/1.0 200")
            if answers:
                return Probe(False, "expected HTTP 200, got HTTP/1.0 503", status=503)
            return Probe(False, "no response: connection refused", answered=False)

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
def test_a_restarting_app_is_seen_listening_at_most_quick_late(healthy_at: float) -> None:
    # Issue 18: a batch should cost the app's own restart-to-healthy time and little more.
    # While the port refuses connections (the app is starting), probes come every QUICK
    # seconds, not every `interval` (the first schedule: an app up at 5.01 s was seen at 5.2).
    clock = _Clock()
    outcome = _wait(clock, clock.app(healthy_at), interval=0.5)
    assert outcome.ok  # type: ignore[attr-defined]
    assert healthy_at <= clock.probes[-1] <= healthy_at + QUICK + 1e-9
    assert clock.probes[0] == 0.0  # the first probe right away, no initial delay
    gaps = [b - a for a, b in zip(clock.probes, clock.probes[1:], strict=False)]
    assert all(abs(gap - QUICK) < 1e-9 for gap in gaps)


@pytest.mark.parametrize("healthy_at", [0.0, 1.0, 4.99, 9.9])
def test_an_app_that_answers_but_is_not_ready_is_asked_every_interval(healthy_at: float) -> None:
    # A 503 while it warms up: the health endpoint is asked no more often than the playbook
    # says, and the app is seen healthy at most one interval late.
    clock = _Clock()
    outcome = _wait(clock, clock.app(healthy_at, answers=True))
    assert outcome.ok  # type: ignore[attr-defined]
    assert healthy_at <= clock.probes[-1] <= healthy_at + 0.2 + 1e-9
    gaps = [b - a for a, b in zip(clock.probes, clock.probes[1:], strict=False)]
    assert all(abs(gap - 0.2) < 1e-9 for gap in gaps)


def test_an_interval_shorter_than_quick_is_kept() -> None:
    clock = _Clock()
    assert _wait(clock, clock.app(1.0), interval=0.02).ok  # type: ignore[attr-defined]
    assert clock.probes[-1] <= 1.0 + 0.02 + 1e-9


def test_each_extra_consecutive_success_costs_one_interval() -> None:
    # `successes: N` means healthy for (N - 1) x interval: the confirming probes keep the
    # playbook's spacing (as Kubernetes' successThreshold does), only the wait got quicker.
    clock = _Clock()
    outcome = _wait(clock, clock.app(3.0), successes=3)
    assert outcome.ok  # type: ignore[attr-defined]
    first_pass = next(t for t in clock.probes if t >= 3.0)
    assert first_pass <= 3.0 + QUICK + 1e-9
    assert clock.probes[-1] == pytest.approx(first_pass + 2 * 0.2)


@pytest.mark.parametrize("answers", [False, True])
def test_a_host_that_stays_down_is_probed_less_often_and_last_at_the_deadline(
    answers: bool,
) -> None:
    clock = _Clock()
    outcome = _wait(clock, clock.app(float("inf"), answers=answers), deadline=30.0)
    assert not outcome.ok  # type: ignore[attr-defined]
    gaps = [round(b - a, 6) for a, b in zip(clock.probes, clock.probes[1:], strict=False)]
    fast = [g for t, g in zip(clock.probes, gaps, strict=False) if t < FAST_WINDOW]
    assert set(fast) == {0.2 if answers else QUICK}
    late = [g for t, g in zip(clock.probes, gaps, strict=False) if t >= FAST_WINDOW]
    assert max(late) == pytest.approx(0.8)  # 4x interval at most, refused or not
    assert clock.probes[-1] == pytest.approx(30.0)  # one last look at the deadline
    after_window = [t for t in clock.probes if t >= FAST_WINDOW]
    assert len(after_window) <= 40  # against 100 at a constant 0.2 s


def test_probe_delay_schedule() -> None:
    assert probe_delay(0.5, streak=0, waited=0.0) == 0.5
    assert probe_delay(0.5, streak=0, waited=0.0, answered=False) == QUICK
    assert probe_delay(0.05, streak=0, waited=0.0, answered=False) == 0.05
    assert probe_delay(0.5, streak=0, waited=FAST_WINDOW + 1) == 1.0
    assert probe_delay(0.5, streak=0, waited=FAST_WINDOW + 1, answered=False) == 1.0
    assert probe_delay(0.5, streak=0, waited=2 * FAST_WINDOW + 1) == 2.0
    assert probe_delay(0.5, streak=2, waited=60.0) == 0.5  # confirming never backs off
    assert probe_delay(0.5, streak=1, waited=0.0, answered=False) == 0.5


def test_http_probe_says_nothing_answered_when_the_port_refuses() -> None:
    target = parse_url("http://127.0.0.1:9/health")

    def refused() -> socket.socket:
        raise ConnectionRefusedError("connection refused")

    probe = http_probe(refused, target, expect_status=200, expect_version=None)
    assert not probe.ok and not probe.answered and "refused" in probe.detail
    answered = judge_http(b"HTTP/1.0 503 x\r\n\r\nwarming", expect_status=200, expect_version=None)
    assert not answered.ok and answered.answered
