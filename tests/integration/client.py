"""A client that sends requests continuously (one at a time, bounded in count and in time)
and records every response: when it was sent and answered, the status, the version from the
JSON body, or the error. Zero-downtime tests run it through the load balancer while a
deploy, a switch or a rollback happens, then judge the record."""

from __future__ import annotations

import contextlib
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
        sent = time.time()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
            version = None
            with contextlib.suppress(ValueError, AttributeError):
                version = json.loads(body).get("version")
            error = None if resp.status == 200 else body.decode(errors="replace")[:200]
            return Response(sent, time.time(), resp.status, version, error)
        except (OSError, http.client.HTTPException) as exc:
            return Response(sent, time.time(), None, None, f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    # ------------------------------------------------------------------ judging the record

    def failures(self) -> list[Response]:
        return [r for r in self.responses if not r.ok]

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
        lines = [f"{len(self.responses)} responses, {len(failed)} failed"]
        lines += [f"  {r.sent:.3f} {r.status} {r.error}" for r in failed[:10]]
        return "\n".join(lines)
