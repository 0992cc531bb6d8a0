"""A client that sends requests continuously (one at a time, bounded in count and in time)
and records every response: when it was sent and answered, the status, the version from the
JSON body, or the error. Zero-downtime tests run it through the load balancer while a
deploy, a switch or a rollback happens, then judge the record.

With `post_every=N`, every Nth request is a POST /orders (a write, which nginx never
retries on another server once sent): it succeeds only with a 200 and a complete body that
carries the sha256 of what was sent."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    sent: float  # time.time(), comparable with deployer event times
    answered: float
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    version: str | None
    error: str | None = None
    method: str = "GET"

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


class Client:
    """Use as a context manager around the operation under test::

    with Client(nginx.url + "/health") as client:
        project.deploy()
    assert client.failures() == []
    """

    def __init__(
        self,
        url: str,
        *,
        max_requests: int = 20000,
        max_seconds: float = 240.0,
        interval: float = 0.005,
        timeout: float = 15.0,
        post_every: int = 0,
    ) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.hostname.startswith("127."), "loopback only"
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.interval = interval
        self.timeout = timeout
        self.post_every = post_every
        self.responses: list[Response] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zero-downtime-client", daemon=True)

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Wait until at least `count` responses are recorded (the client is warmed up)."""
        deadline = time.monotonic() + timeout
        while len(self.responses) < count:
            assert time.monotonic() < deadline, f"only {len(self.responses)} responses"
            time.sleep(0.02)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            if len(self.responses) >= self.max_requests:
                break
            if time.monotonic() - started > self.max_seconds:
                break
            self.responses.append(self._one())
            time.sleep(self.interval)

    def _one(self) -> Response:
        n = len(self.responses)
        if self.post_every and n % self.post_every == self.post_every - 1:
            payload = json.dumps({"order": n, "sku": "tea", "qty": n % 7 + 1}).encode()
            return request(self.host, self.port, "/orders", payload, timeout=self.timeout)
        return request(self.host, self.port, self.path, None, timeout=self.timeout)

    # ------------------------------------------------------------------ judging the record

    def failures(self) -> list[Response]:
        return [r for r in self.responses if not r.ok]

    def count(self, method: str) -> int:
        return sum(1 for r in self.responses if r.method == method)

    def versions(self) -> list[str | None]:
        """The versions seen, in order, consecutive repeats collapsed: [old, new] for a clean
        switch; [old, new, old, new, ...] while a rolling deploy has both live."""
        out: list[str | None] = []
        for r in self.responses:
            if not out or out[-1] != r.version:
                out.append(r.version)
        return out

    def summary(self) -> str:
        failed = self.failures()
        lines = [
            f"{len(self.responses)} responses ({self.count('GET')} GET, {self.count('POST')}"
            f" POST), {len(failed)} failed"
        ]
        lines += [f"  {r.sent:.3f} {r.method} {r.status} {r.error}" for r in failed[:10]]
        return "\n".join(lines)


def request(
    host: str, port: int, path: str, payload: bytes | None, *, timeout: float = 15.0
) -> Response:
    """One request on its own connection: a GET, or a POST of `payload`, judged by its body
    (a POST must answer the sha256 of the payload: a body cut short fails)."""
    method = "GET" if payload is None else "POST"
    sent = time.time()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=payload, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        data: dict[str, object] = {}
        with contextlib.suppress(ValueError, AttributeError):
            data = json.loads(body)
        if not isinstance(data, dict):
            data = {}
        version = data.get("version")
        error = None if resp.status == 200 else body.decode(errors="replace")[:200]
        digest = hashlib.sha256(payload).hexdigest() if payload is not None else None
        if error is None and digest is not None and data.get("sha256") != digest:
            error = f"incomplete or wrong answer: {body[:200]!r}"
        return Response(
            sent, time.time(), resp.status, str(version) if version else None, error, method
        )
    except (OSError, http.client.HTTPException) as exc:
        return Response(sent, time.time(), None, None, f"{type(exc).__name__}: {exc}", method)
    finally:
        conn.close()
