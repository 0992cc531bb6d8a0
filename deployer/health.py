"""Health checks: one probe (HTTP through the host's SSH connection or from here, or a remote
command), and the waiting rule: N consecutive successes within an overall deadline, on the
schedule of `probe_delay` (quick while a restarting app does not answer yet, steady right
after a restart, backing off only for a host that stays down). Retrying here is safe: a probe
changes nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from deployer.errors import ConfigError
from deployer.remote.transport import Channel

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str  # what an operator needs to see: status line and body, or the error
    latency: float = 0.0
    status: int | None = None
    # False when nothing answered at all (connection refused, reset, timed out): an app
    # still starting, which a quick look costs nothing (see `probe_delay`).
    answered: bool = True


@dataclass(frozen=True)
class Outcome:
    ok: bool
    attempts: int
    last: Probe
    last_failure: Probe | None = None  # why it is unhealthy, when the last probe passed


@dataclass(frozen=True)
class HttpTarget:
    address: str
    port: int
    path: str
    host_header: str


def parse_url(url: str) -> HttpTarget:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"health check URL must be http://host[:port]/path, got {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    port = parts.port or 80
    return HttpTarget(parts.hostname, port, path, parts.netloc)


def http_probe(
    connect: Callable[[], Channel | socket.socket],
    target: HttpTarget,
    *,
    expect_status: int,
    expect_version: str | None,
) -> Probe:
    """One HTTP/1.0 GET over a fresh stream from `connect` (an SSH channel or a socket)."""
    started = time.monotonic()
    try:
        stream = connect()
        try:
            request = (
                f"GET {target.path} HTTP/1.0\r\nHost: {target.host_header}\r\n"
                "User-Agent: deployer-health\r\nConnection: close\r\n\r\n"
            )
            stream.sendall(request.encode())
            raw = b""
            while len(raw) < MAX_BODY:
                chunk = stream.recv(8192)
                if not chunk:
                    break
                raw += chunk
        finally:
            stream.close()
    except Exception as exc:  # noqa: BLE001 - any failure to talk HTTP is an unhealthy probe
        detail = f"no response: {exc or type(exc).__name__}"
        return Probe(False, detail, time.monotonic() - started, answered=False)
    latency = time.monotonic() - started
    return judge_http(
        raw, expect_status=expect_status, expect_version=expect_version, latency=latency
    )


def judge_http(
    raw: bytes, *, expect_status: int, expect_version: str | None, latency: float = 0.0
) -> Probe:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")
    text = body.decode("utf-8", errors="replace").strip()
    shown = f"{status_line} {text[:300]}".strip()
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        return Probe(False, f"not an HTTP response: {raw[:200]!r}", latency)
    if status != expect_status:
        return Probe(False, f"expected HTTP {expect_status}, got {shown}", latency, status)
    if expect_version is not None:
        try:
            version = json.loads(text).get("version")
        except (ValueError, AttributeError):
            return Probe(False, f"body is not JSON with a version: {shown}", latency, status)
        if version != expect_version:
            return Probe(
                False, f"version is {version!r}, expected {expect_version!r}", latency, status
            )
    return Probe(True, shown, latency, status)


FAST_WINDOW = 10.0  # seconds after a restart during which probes come every `interval`
QUICK = 0.1  # seconds between looks at an app that does not answer yet, in the fast window


def probe_delay(interval: float, *, streak: int, waited: float, answered: bool = True) -> float:
    """Seconds to wait before the next probe. Pure: the whole schedule is here.

    - Confirming (the last probe passed, more consecutive successes are needed): `interval`,
      so `successes: N` means healthy for (N - 1) x interval, as Kubernetes' successThreshold
      and load balancers' healthy thresholds count it; never a backoff.
    - Waiting for the app to come up, for the first FAST_WINDOW seconds, when a restarting
      app usually turns healthy: every QUICK seconds (or `interval`, if shorter) while nothing
      answers (the port refuses connections: the app is not listening yet, and a refused
      connection costs it nothing), so a batch waits for the app's own start and at most
      QUICK more; every `interval` once it answers but is not healthy yet (a 503 while it
      warms up), so a slow health endpoint is not asked more often than the playbook says.
    - Then 2x and, after twice the window, 4x `interval`, so a host that stays down is not
      probed at a high rate until the deadline.
    """
    if streak > 0:
        return interval
    if waited < FAST_WINDOW:
        return interval if answered else min(interval, QUICK)
    return interval * (2 if waited < 2 * FAST_WINDOW else 4)


def wait_until_healthy(
    probe: Callable[[], Probe],
    *,
    successes: int,
    interval: float,
    deadline: float,
    on_probe: Callable[[Probe], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> Outcome:
    """Probe at once, then per `probe_delay`, until `successes` consecutive probes pass, or the
    deadline passes (the last probe is made at the deadline), or the run is cancelled."""
    started = clock()
    streak = 0
    attempts = 0
    last = Probe(False, "not checked")
    last_failure: Probe | None = None
    while True:
        attempts += 1
        last = probe()
        if not last.ok:
            last_failure = last
        if on_probe:
            on_probe(last)
        streak = streak + 1 if last.ok else 0
        if streak >= successes:
            return Outcome(True, attempts, last, last_failure)
        waited = clock() - started
        if waited >= deadline or cancelled():
            return Outcome(False, attempts, last, last_failure)
        delay = probe_delay(interval, streak=streak, waited=waited, answered=last.answered)
        sleep(min(delay, deadline - waited))
