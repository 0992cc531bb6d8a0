"""Sample web app deployed by the examples: a stdlib HTTP server over an SQLite database.

GET /health  200 {"status": "healthy", ...} or 500 {"status": "unhealthy", "reasons": [...]}
GET /        records a visit and shows the release, environment and visit count; with
             `?user=ID`, "checkout": "new" or "old" as the `new-checkout` feature flag decides.
POST /orders a write: stores the order (the request body) in the database and answers with
             its id and the body's sha256; `?ms=N` takes N ms, answering the first half of
             the body at N/2 ms (a slow request in flight, for zero-downtime tests).
GET /api/items, /api/cart   small JSON pages (more endpoints for traffic to spread over)
GET /metrics the Prometheus exposition of the counters below, written by the vendored
             prometheus_client library (third_party/): requests by method, path and status,
             and a latency histogram under two common naming schemes.
It must never write inside its release directory (releases are read-only on the hosts).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

sys.dont_write_bytecode = True  # releases are read-only: never write __pycache__ there
sys.path.insert(0, str(Path(__file__).resolve().parent / "third_party"))  # prometheus_client

import flags_runtime  # noqa: E402  (a copy of deployer/flags/runtime.py: hosts lack the deployer)
import migrate  # noqa: E402
import settings  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

REQUIRED_SCHEMA = 2  # this release needs migrations up to 002 (SCHEMA says so too)
APP_DIR = settings.APP_DIR
BROKEN_ON = APP_DIR / "BROKEN_ON"  # test hook: listen addresses (or *) whose health fails
SLOW_MS = APP_DIR / "SLOW_MS"  # test hook: milliseconds to sleep per request
SLOW_STARTED = APP_DIR / "SLOW_STARTED"  # ... touched as a slowed request starts sleeping
WARMUP_S = APP_DIR / "WARMUP_S"  # test hook: /health answers 503 for this long after start
FLAPPING = APP_DIR / "FLAPPING"  # test hook: /health alternates 200 and 500
ERROR_PERCENT = APP_DIR / "ERROR_PERCENT"  # test hook: this share of other pages answers 500
# Test hooks: paths (one a line) that answer 500, from ERROR_AFTER_S seconds after start (0).
ERROR_PATHS = APP_DIR / "ERROR_PATHS"
ERROR_AFTER_S = APP_DIR / "ERROR_AFTER_S"
PAGES = ("/", "/health", "/api/items", "/api/cart")  # the `path` label: these, else "other"


def release_version() -> str:
    try:
        return (APP_DIR / "REVISION").read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError):
        return "dev"


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def broken_here(listen: str) -> bool:
    text = _read_optional(BROKEN_ON)
    if text is None:
        return False
    listed = {line.split("#", 1)[0].strip() for line in text.splitlines()}
    return "*" in listed or listen in listed


def slow_ms() -> int:
    text = _read_optional(SLOW_MS)
    try:
        return max(0, int(text.strip())) if text else 0
    except ValueError:
        return 0


def _number(path: Path) -> float:
    text = _read_optional(path)
    try:
        return max(0.0, float(text.strip())) if text else 0.0
    except ValueError:
        return 0.0


class App:
    def __init__(self, config: settings.Settings) -> None:
        self.config = config
        self.version = release_version()
        self.started = time.monotonic()
        self.warmup = _number(WARMUP_S)
        self.flapping = FLAPPING.exists()
        self.error_percent = min(100.0, _number(ERROR_PERCENT))
        self._probes = itertools.count()
        self._pages = itertools.count()
        text = _read_optional(ERROR_PATHS) or ""
        self.error_paths = {line.strip() for line in text.splitlines() if line.strip()}
        self.error_after = _number(ERROR_AFTER_S)
        self.metrics = Metrics()

    def failing(self, path: str) -> bool:
        """ERROR_PATHS lists this path and ERROR_AFTER_S has passed since start."""
        return path in self.error_paths and time.monotonic() - self.started >= self.error_after

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection for one request: committed when the block succeeds, always closed."""
        # mode=rw: a missing database is an error, never silently created empty.
        uri = f"file:{quote(str(self.config.database.resolve()))}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        reasons: list[str] = []
        schema: int | None = None
        try:
            with self._db() as conn:
                schema = migrate.current_version(conn)
        except sqlite3.Error as exc:
            reasons.append(f"database {self.config.database}: {exc}")
        if schema is not None and schema < REQUIRED_SCHEMA:
            reasons.append(f"database schema {schema} is older than required {REQUIRED_SCHEMA}")
        if broken_here(self.config.listen):
            reasons.append(f"BROKEN_ON lists {self.config.listen}")
        if time.monotonic() - self.started < self.warmup:
            reasons.append(f"warming up ({self.warmup:g}s)")
        if self.flapping and next(self._probes) % 2 == 1:
            reasons.append("FLAPPING: every other answer fails")
        body: dict[str, Any] = {
            "status": "unhealthy" if reasons else "healthy",
            "timestamp": time.time(),
            "version": self.version,
            "schema": schema,
            "required_schema": REQUIRED_SCHEMA,
        }
        if reasons:
            body["reasons"] = reasons
        return (500 if reasons else 200), body

    def index(self, path: str, visitor: str, user: str | None = None) -> tuple[int, dict[str, Any]]:
        n, share = next(self._pages), self.error_percent / 100  # spread evenly over requests
        if share and int((n + 1) * share) > int(n * share):
            return 500, {"error": "ERROR_PERCENT: a deliberate failure", "version": self.version}
        try:
            with self._db() as conn:  # commits on success
                conn.execute(
                    "INSERT INTO visits (path, visitor, visited_at) VALUES (?, ?, ?)",
                    (path, visitor, time.time()),
                )
                visits = conn.execute("SELECT COUNT(*) FROM visits").fetchone()[0]
        except sqlite3.Error as exc:
            return 500, {"error": f"database: {exc}", "version": self.version}
        return 200, {
            "app": "sample",
            "version": self.version,
            "env": self.config.env,
            "host": self.config.listen,
            "visits": visits,
            "pid": os.getpid(),
            "user": user,
            "checkout": "new" if self.flag("new-checkout", user) else "old",
        }

    def order(self, payload: bytes, visitor: str) -> tuple[int, dict[str, Any]]:
        """Store an order: a visit row whose path carries the payload's digest."""
        digest = hashlib.sha256(payload).hexdigest()
        try:
            with self._db() as conn:  # commits on success
                cursor = conn.execute(
                    "INSERT INTO visits (path, visitor, visited_at) VALUES (?, ?, ?)",
                    (f"/orders/{digest}", visitor, time.time()),
                )
                order_id = cursor.lastrowid
        except sqlite3.Error as exc:
            return 500, {"error": f"database: {exc}", "version": self.version}
        return 200, {
            "order": order_id,
            "sha256": digest,
            "bytes": len(payload),
            "version": self.version,
            "host": self.config.listen,
            "pid": os.getpid(),
        }

    def flag(self, name: str, user: str | None) -> bool:
        # The file `invoke flags.set` pushes, named by app.ini; re-read only when it changes.
        # Without flags_file in app.ini, $DEPLOYER_FLAGS_FILE names it.
        return flags_runtime.is_enabled(name, user, path=self.config.flags_file)


class Metrics:
    """What /metrics exposes. The latency histogram is kept under two names: the one
    prometheus_client users commonly write (`http_request_duration_seconds`, with a
    `http_requests_total` counter) and OpenTelemetry's semantic-convention name as its
    Prometheus exporter writes it, so the deployer's default queries for both are tested."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.otel = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests (OpenTelemetry naming)",
            ["http_request_method", "http_route", "http_response_status_code"],
            registry=self.registry,
        )

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        path = path if path in PAGES else "other"
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path, str(status)).observe(seconds)
        self.otel.labels(method, path, str(status)).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Handler(BaseHTTPRequestHandler):
    server_version = "sample-app"
    timeout = 10  # an idle client connection cannot hold up a graceful stop for longer
    app: App  # set on the subclass made by serve()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path == "/metrics":  # not counted itself: scrapes are no traffic
            self._send(200, self.app.metrics.exposition(), CONTENT_TYPE_LATEST)
            return
        started = time.monotonic()
        delay = slow_ms()
        if delay:
            with contextlib.suppress(OSError):  # a release is read-only: only tests see it
                SLOW_STARTED.touch()
            time.sleep(delay / 1000)
        if self.app.failing(path):
            status, body = 500, {"error": f"ERROR_PATHS: {path} fails", "version": self.app.version}
        elif path == "/health":
            status, body = self.app.health()
        elif path == "/":
            user = parse_qs(url.query).get("user", [None])[0]
            status, body = self.app.index(path, self.client_address[0], user)
        elif path in ("/api/items", "/api/cart"):
            status, body = 200, {"path": path, "items": [], "version": self.app.version}
        else:
            status, body = 404, {"error": f"no such page: {path}"}
        self._answer(status, body)
        self.app.metrics.observe("GET", path, status, time.monotonic() - started)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length > 0 else b""
        try:
            ms = max(0, int(parse_qs(url.query).get("ms", ["0"])[0]))
        except ValueError:
            ms = 0
        ms += slow_ms()
        if url.path != "/orders":
            self._answer(404, {"error": f"no such page: {url.path}"})
            return
        status, body = self.app.order(payload, self.client_address[0])
        self._answer(status, body, pause=ms / 1000)
        self.app.metrics.observe("POST", url.path, status, time.monotonic() - started)

    def _answer(self, status: int, body: dict[str, Any], pause: float = 0.0) -> None:
        """Send a JSON answer. With `pause`, half of it is spent before the headers and half
        between the two halves of the body, so the request is in flight all along."""
        if pause:
            time.sleep(pause / 2)
        self._send(status, (json.dumps(body) + "\n").encode(), "application/json", pause / 2)

    def _send(self, status: int, data: bytes, content_type: str, pause: float = 0.0) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if pause:
            half = len(data) // 2
            self.wfile.write(data[:half])
            self.wfile.flush()
            time.sleep(pause)
            data = data[half:]
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    allow_reuse_address = True  # restart binds again while old sockets sit in TIME_WAIT
    # Graceful stop (SIGTERM from bin/restart): server_close() closes the listening socket
    # first, then waits for the request threads, so requests in flight are answered instead
    # of cut off. Threads must not be daemons for that (only non-daemon ones are joined).
    daemon_threads = False
    block_on_close = True


def stop_on_sigterm(server: Server) -> None:
    """SIGTERM asks serve_forever() to return; main() then stops accepting and drains (see Server).

    The handler must not raise: an exception raised between two bytecodes of the main thread
    can land inside process_request() after a request thread started, and socketserver then
    closes that request's socket under the thread, cutting a response off after its headers.
    shutdown() blocks until the loop has left, so it runs in its own thread.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)


def write_pidfile(path: Path) -> None:
    """Written once the port is bound, so its appearance tells bin/restart the app started."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")
    os.replace(tmp, path)


def remove_pidfile(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sample web app")
    settings.add_arguments(parser, server=True)
    parser.add_argument("--pidfile", type=Path, help="write the pid here once listening")
    args = parser.parse_args(argv)
    try:
        config = settings.load(args)
    except settings.SettingsError as exc:
        print(f"app: config error: {exc}", file=sys.stderr)
        return 2
    app = App(config)
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = Server((config.listen, config.port), handler)
    stop_on_sigterm(server)
    print(
        f"sample app {app.version} ({config.env}) listening on {config.listen}:{config.port},"
        f" needs schema {REQUIRED_SCHEMA}",
        flush=True,
    )
    if args.pidfile:
        write_pidfile(args.pidfile)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        if args.pidfile:
            remove_pidfile(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
