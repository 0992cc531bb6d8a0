"""Health judging and the consecutive-success rule."""

import itertools

from deployer.health import Probe, judge_http, parse_url, wait_until_healthy

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
