"""Webhook notifications against a real HTTP receiver on 127.0.0.1: what is sent on start,
success, failure and rollback, retries, and a webhook that is down or stuck."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployer.errors import ConfigError
from deployer.events import (
    BatchFinished,
    BatchStarted,
    Event,
    EventBus,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
)
from deployer.reporters.webhook import WebhookReporter, webhook_target

SECRET_PATH = "/services/T000/B000/s3cr3tT0k3n"


class Receiver:
    """An HTTP server on 127.0.0.1 that records JSON POSTs and answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.statuses: list[int] = []  # answered in order; 200 once exhausted
        self.delay = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                time.sleep(receiver.delay)
                # A timeout test's client may have given up by now: that is the point.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{SECRET_PATH}"

    @property
    def payloads(self) -> list[Any]:
        return [body for _, _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must not carry loopback test traffic elsewhere."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def reporter(url: str, stream: io.StringIO, **options: Any) -> WebhookReporter:
    options.setdefault("backoff", 0.01)
    return WebhookReporter(url, user="alice", stream=stream, **options)


def run(hook: WebhookReporter, events: list[Event]) -> None:
    bus = EventBus()
    bus.subscribe(hook)
    for event in events:
        bus.emit(event)


def started(action: str = "deploy", release: str = "R2") -> RunStarted:
    hosts = ["web1", "web2", "web3"]
    return RunStarted(
        run_id="run1",
        action=action,
        env="production",
        release=release,
        hosts=hosts,
        batches=[["web1"], ["web2", "web3"]],
    )


def deploy_events(*, healthy: bool) -> list[Event]:
    second = BatchFinished(
        index=2,
        total=2,
        healthy=["web2"] if not healthy else ["web2", "web3"],
        failed=["web3"] if not healthy else [],
        within_budget=healthy,
    )
    on = "R2" if healthy else "R1"
    return [
        started(),
        BatchStarted(index=1, total=2, hosts=["web1"]),
        StepFinished(host="web1", step="switch", ok=True, duration=0.1),
        BatchFinished(index=1, total=2, healthy=["web1"], failed=[], within_budget=True),
        BatchStarted(index=2, total=2, hosts=["web2", "web3"]),
        second,
        RunFinished(
            run_id="run1",
            action="deploy",
            ok=healthy,
            duration=12.34,
            releases={"web1": on, "web2": on, "web3": on},
            message="" if healthy else "batch 2/2 unhealthy (1 of 2 hosts failed)\n  web3: ...",
        ),
    ]


def test_start_and_success_are_posted(receiver: Receiver) -> None:
    stream = io.StringIO()
    hook = reporter(receiver.url, stream)
    run(hook, deploy_events(healthy=True))
    assert hook.close(timeout=5)

    start, success = receiver.payloads
    assert start["text"] == (
        "deploy R2 → production: started by alice on 3 host(s) (web1, web2, web3)"
    )
    assert start["deployer"] == {
        "event": "start",
        "action": "deploy",
        "run_id": "run1",
        "env": "production",
        "release": "R2",
        "user": "alice",
        "duration": None,
        "hosts": ["web1", "web2", "web3"],
        "ok": None,
    }
    assert (
        success["text"]
        == "deploy R2 → production: succeeded in 12.3s on 3 host(s) (web1, web2, web3)"
    )
    assert success["deployer"]["event"] == "success"
    assert success["deployer"]["ok"] is True
    assert success["deployer"]["duration"] == 12.34
    assert success["deployer"]["rolled_back"] == []
    assert success["deployer"]["releases"] == {"web1": "R2", "web2": "R2", "web3": "R2"}
    path, headers, _ = receiver.requests[0]
    assert path == SECRET_PATH
    assert headers["Content-Type"] == "application/json"
    assert stream.getvalue() == ""


def test_failure_and_its_rollback_are_posted(receiver: Receiver) -> None:
    hook = reporter(receiver.url, io.StringIO())
    run(hook, deploy_events(healthy=False))
    assert hook.close(timeout=5)

    events = [p["deployer"]["event"] for p in receiver.payloads]
    assert events == ["start", "rollback", "failure"]
    _, rollback, failure = receiver.payloads
    assert rollback["text"] == (
        "deploy R2 → production: batch 2/2 over the failure budget (web3 failed); rolling back"
    )
    assert rollback["deployer"]["hosts"] == ["web3"]
    assert rollback["deployer"]["ok"] is False
    assert failure["text"] == (
        "deploy R2 → production: FAILED after 12.3s on 3 host(s) (web1, web2, web3):"
        " batch 2/2 unhealthy (1 of 2 hosts failed); rolled back: web1, web2, web3"
    )
    assert failure["deployer"]["ok"] is False
    assert failure["deployer"]["rolled_back"] == ["web1", "web2", "web3"]
    assert failure["deployer"]["message"] == "batch 2/2 unhealthy (1 of 2 hosts failed)"


def test_hosts_failing_within_the_budget_are_reported_as_rolled_back(receiver: Receiver) -> None:
    hook = reporter(receiver.url, io.StringIO())
    run(
        hook,
        [
            started(),
            BatchStarted(index=1, total=1, hosts=["web1", "web2", "web3"]),
            BatchFinished(
                index=1, total=1, healthy=["web1", "web2"], failed=["web3"], within_budget=True
            ),
        ],
    )
    assert hook.close(timeout=5)
    rollback = receiver.payloads[1]
    assert rollback["deployer"]["event"] == "rollback"
    assert rollback["text"] == (
        "deploy R2 → production: web3 failed, returning to the previous release;"
        " the deploy continues (within the failure budget)"
    )


def test_manual_rollback_is_posted(receiver: Receiver) -> None:
    hook = reporter(receiver.url, io.StringIO())
    finished = RunFinished(
        run_id="run1",
        action="rollback",
        ok=True,
        duration=3.0,
        releases={"web1": "R1", "web2": "R1", "web3": "R1"},
    )
    run(hook, [started("rollback", "R1"), Notice(level="info", text="x"), finished])
    assert hook.close(timeout=5)

    start, rollback = receiver.payloads
    assert start["text"].startswith("rollback R1 → production: started by alice")
    assert rollback["text"] == (
        "rollback R1 → production: rolled back in 3.0s on 3 host(s) (web1, web2, web3)"
    )
    assert (rollback["deployer"]["event"], rollback["deployer"]["ok"]) == ("rollback", True)


def test_a_server_error_is_retried(receiver: Receiver) -> None:
    receiver.statuses = [500, 200]
    stream = io.StringIO()
    hook = reporter(receiver.url, stream)
    run(hook, [started()])
    assert hook.close(timeout=5)
    assert len(receiver.requests) == 2
    assert receiver.payloads[0] == receiver.payloads[1]
    assert stream.getvalue() == ""


def test_retries_are_bounded_and_end_in_a_warning(receiver: Receiver) -> None:
    receiver.statuses = [503, 503, 503, 503]
    stream = io.StringIO()
    hook = reporter(receiver.url, stream, retries=2)
    run(hook, [started()])
    assert hook.close(timeout=5)
    assert len(receiver.requests) == 3
    host, port = receiver.server.server_address[:2]
    assert stream.getvalue() == (
        f"WARNING: webhook http://{host!s}:{port}: start notification not delivered"
        " after 3 attempt(s): HTTP 503\n"
    )


def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [404]
    stream = io.StringIO()
    hook = reporter(receiver.url, stream)
    run(hook, [started()])
    assert hook.close(timeout=5)
    assert len(receiver.requests) == 1
    assert "after 1 attempt(s): HTTP 404" in stream.getvalue()


def test_unreachable_webhook_neither_raises_nor_blocks() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stream = io.StringIO()
    hook = reporter(f"http://127.0.0.1:{port}{SECRET_PATH}", stream, timeout=1)
    begin = time.monotonic()
    run(hook, deploy_events(healthy=False))
    assert time.monotonic() - begin < 0.5  # the run itself never waits for the webhook
    assert hook.close(timeout=10)
    assert time.monotonic() - begin < 5
    warnings = stream.getvalue().splitlines()
    assert len(warnings) == 3
    assert warnings[0].startswith(f"WARNING: webhook http://127.0.0.1:{port}: start notification")
    assert "Connection refused" in warnings[0]
    assert SECRET_PATH not in stream.getvalue() and "s3cr3t" not in stream.getvalue()


def test_a_stuck_webhook_times_out(receiver: Receiver) -> None:
    receiver.delay = 2.0
    stream = io.StringIO()
    hook = reporter(receiver.url, stream, timeout=0.3, retries=0)
    run(hook, [started()])
    assert hook.close(timeout=5)
    assert "after 1 attempt(s): timed out" in stream.getvalue()


def test_close_gives_up_on_a_stuck_webhook_and_a_full_queue_drops(receiver: Receiver) -> None:
    receiver.delay = 3.0
    stream = io.StringIO()
    hook = reporter(receiver.url, stream, timeout=5, queue_size=1)
    run(hook, [started(), started(), started(), started()])  # one sending, one queued, 2 dropped
    begin = time.monotonic()
    assert hook.close(timeout=0.5) is False
    assert time.monotonic() - begin < 1.5
    lines = stream.getvalue().splitlines()
    assert (
        lines.count(f"WARNING: webhook {hook.target}: RunStarted: queue full, notification dropped")
        >= 1
    )
    assert lines[-1] == (
        f"WARNING: webhook {hook.target}: notifications still pending after 0.5s were abandoned"
    )


def test_the_url_is_never_shown() -> None:
    hook = WebhookReporter(f"https://hooks.slack.com{SECRET_PATH}?token=x", stream=io.StringIO())
    assert repr(hook) == "WebhookReporter(https://hooks.slack.com)"
    assert hook.target == "https://hooks.slack.com"
    assert hook.close(timeout=1)
    assert webhook_target("http://[::1]:8080/x") == "http://[::1]:8080"
    for bad in (f"hooks.slack.com{SECRET_PATH}", f"ftp://h{SECRET_PATH}", "http://h:port/s3cr3t"):
        with pytest.raises(ConfigError) as info:
            WebhookReporter(bad)
        assert "s3cr3t" not in str(info.value) and "slack" not in str(info.value)


def test_a_failing_post_deploy_watch_is_posted_with_its_failed_rules(receiver: Receiver) -> None:
    from deployer.events import CanaryGroup, CanaryRule, WatchChecked

    stream = io.StringIO()
    hook = reporter(receiver.url, stream)
    fleet = CanaryGroup(("web1", "web2", "web3"), 352, 92, 26.1, 4.0, 9.0)
    rules = [
        CanaryRule("error rate vs baseline", "26.1%", "0.0%", "<= baseline + 1 pt (1.0%)", False),
        CanaryRule("p95 latency", "9 ms", "8 ms", "<= 1.5 x baseline (30 ms)", True),
    ]
    ok = WatchChecked(3.0, 45, 3, fleet, fleet, rules[1:], "ok", "passed")
    failed = WatchChecked(21.2, 45, 6, fleet, fleet, rules, "failed", "failed: error rate", True)
    run(hook, [started(), ok, failed])
    assert hook.close(timeout=5)
    _, rollback = receiver.payloads  # the passing look is not posted
    assert rollback["text"] == (
        "deploy R2 → production: post-deploy watch failed: error rate at 21s; rolling back"
    )
    assert rollback["deployer"]["event"] == "rollback" and rollback["deployer"]["ok"] is False
    assert rollback["deployer"]["watch"] == [
        {
            "rule": "error rate vs baseline",
            "fleet": "26.1%",
            "before": "0.0%",
            "limit": "<= baseline + 1 pt (1.0%)",
        }
    ]
