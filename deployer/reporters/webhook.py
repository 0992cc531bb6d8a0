"""Webhook notifications: Slack-compatible JSON POSTed when a run starts, succeeds, fails, and
when hosts are rolled back.

A webhook must never fail a deploy, nor hold it up for long: messages go out from one
background thread through a bounded queue, and an undeliverable one costs a warning line on
stderr. The URL is a secret (a Slack webhook URL carries its token): it is never printed; only
its scheme and host are.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from deployer.errors import ConfigError
from deployer.events import (
    BatchFinished,
    BatchStarted,
    Event,
    RunFinished,
    RunStarted,
    WatchChecked,
)
from deployer.runner import operator
from deployer.secrets import mask, redact_event

__all__ = ["WebhookReporter", "webhook_target"]

MAX_HOSTS_IN_TEXT = 10
_STOP = object()


def webhook_target(url: str) -> str:
    """What may be shown of a webhook URL: scheme and host (and port), never path or query.
    Raises ConfigError, without the URL, when it is not an http(s) URL naming a host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        parts, port = urllib.parse.urlsplit(""), ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The URL itself is not shown: it may hold a token even when malformed.
        raise ConfigError("webhook URL must start with http:// or https:// and name a host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}"


@dataclass
class _Run:
    """What the reporter has learnt about the current run from its events."""

    run_id: str
    action: str
    env: str | None = None
    release: str | None = None
    hosts: Sequence[str] = ()
    started: float = field(default_factory=time.monotonic)
    switched: list[str] = field(default_factory=list)  # hosts of every batch started

    def subject(self) -> str:
        release = f" {self.release}" if self.release else ""
        return f"{self.action}{release} → {self.env or '?'}"


class WebhookReporter:
    """Subscribe to an EventBus; call `close(timeout)` once the run is over to flush."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
        queue_size: int = 32,
        stream: IO[str] | None = None,
    ) -> None:
        self.target = webhook_target(url)
        self._url = url
        mask(url)  # never shown, whoever prints it (a hook echoing the environment)
        self.user = user or operator()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.stream = stream if stream is not None else sys.stderr
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._write_lock = threading.Lock()
        self._run: _Run | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"WebhookReporter({self.target})"

    # ------------------------------------------------------------ events -> messages

    def __call__(self, event: Event) -> None:
        # Runs inside the orchestrator's emit: it must neither raise nor wait.
        try:
            payload = self._payload(redact_event(event))
            if payload is not None and not self._closed:
                self._queue.put_nowait(payload)
        except queue.Full:
            self._warn(f"{event.kind}: queue full, notification dropped")
        except Exception as exc:  # noqa: BLE001 - a notification never fails a run
            self._warn(f"{event.kind}: notification not built: {exc}")

    def _payload(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, RunStarted):
            started = _Run(event.run_id, event.action, event.env, event.release, event.hosts)
            self._run = started
            text = f"started by {self.user} on {_hosts(started.hosts)}"
            return self._message("start", started, text, hosts=started.hosts)
        run = self._run
        if isinstance(event, BatchStarted) and run is not None:
            run.switched.extend(event.hosts)
        elif isinstance(event, BatchFinished) and run is not None and run.action == "deploy":
            return self._batch_failed(run, event)
        elif isinstance(event, WatchChecked) and run is not None and event.verdict == "failed":
            text = f"post-deploy watch {event.reason} at {event.elapsed:.0f}s; rolling back"
            rules = [
                {"rule": r.name, "fleet": r.canary, "before": r.baseline, "limit": r.limit}
                for r in event.rules
                if r.ok is False
            ]
            return self._message("rollback", run, text, hosts=run.hosts, ok=False, watch=rules)
        elif isinstance(event, RunFinished):
            self._run = None
            if run is None or run.run_id != event.run_id:
                run = _Run(event.run_id, event.action, hosts=list(event.releases))
            return self._finished(run, event)
        return None

    def _batch_failed(self, run: _Run, event: BatchFinished) -> dict[str, Any] | None:
        if not event.failed:
            return None
        failed = ", ".join(event.failed)
        if event.within_budget:
            text = (
                f"{failed} failed, returning to the previous release;"
                " the deploy continues (within the failure budget)"
            )
        else:
            text = f"batch {event.index}/{event.total} over the failure budget ({failed} failed);"
            text += " rolling back"
        return self._message("rollback", run, text, hosts=event.failed, ok=False)

    def _finished(self, run: _Run, event: RunFinished) -> dict[str, Any]:
        took = f"{event.duration:.1f}s"
        releases = dict(event.releases)
        # Only the first line: the rest holds remote output, which stays in the run record.
        reason = event.message.strip().splitlines()[0] if event.message.strip() else ""
        extra: dict[str, Any] = {"releases": releases, "message": reason}
        if event.action == "rollback":
            kind = "rollback"
            text = f"rolled back in {took}" if event.ok else f"rollback FAILED after {took}"
        else:
            kind = "success" if event.ok else "failure"
            text = f"succeeded in {took}" if event.ok else f"FAILED after {took}"
            # A switched host that is not on the new release was returned to its previous one.
            back = [h for h in run.switched if releases.get(h, run.release) != run.release]
            extra["rolled_back"] = back
        text += f" on {_hosts(list(releases))}"
        if reason:
            text += f": {reason}"
        if extra.get("rolled_back"):
            text += f"; rolled back: {', '.join(extra['rolled_back'])}"
        duration = round(event.duration, 3)
        return self._message(
            kind, run, text, hosts=list(releases), ok=event.ok, duration=duration, **extra
        )

    def _message(
        self,
        kind: str,
        run: _Run,
        text: str,
        *,
        hosts: Sequence[str],
        ok: bool | None = None,
        duration: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if duration is None and kind != "start":
            duration = round(time.monotonic() - run.started, 3)
        return {
            "text": f"{run.subject()}: {text}",
            "deployer": {
                "event": kind,  # start | success | failure | rollback
                "action": run.action,
                "run_id": run.run_id,
                "env": run.env,
                "release": run.release,
                "user": self.user,
                "duration": duration,
                "hosts": list(hosts),
                "ok": ok,
                **extra,
            },
        }

    # ------------------------------------------------------------ delivery

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued, waiting at most `timeout` seconds. True when all went out
        (or failed with a warning); False when some were still pending and are abandoned."""
        deadline = time.monotonic() + timeout
        if not self._closed:
            self._closed = True
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=max(0.0, timeout))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._warn(f"notifications still pending after {timeout:g}s were abandoned")
            return False
        return True

    def _work(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is _STOP:
                return
            assert isinstance(payload, dict)
            self._deliver(payload)

    def _deliver(self, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload, default=str).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - webhook_target allowed http(s) only
            self._url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "deployer"},
            method="POST",
        )
        retrying = Retrying(
            stop=stop_after_attempt(1 + self.retries),
            wait=wait_exponential(multiplier=self.backoff, max=4 * self.backoff),
            retry=retry_if_exception(_worth_retrying),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with (
                    attempt,
                    urllib.request.urlopen(request, timeout=self.timeout) as response,  # noqa: S310
                ):
                    response.read(64 * 1024)
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any failure
            tries = retrying.statistics.get("attempt_number", 1)
            self._warn(
                f"{payload['deployer']['event']} notification not delivered after"
                f" {tries} attempt(s): {_reason(exc)}"
            )

    def _warn(self, text: str) -> None:
        with self._write_lock:
            self.stream.write(f"WARNING: webhook {self.target}: {text}\n")
            self.stream.flush()


def _worth_retrying(exc: BaseException) -> bool:
    """Server trouble and network trouble may pass; a 4xx (bad URL, revoked token) will not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, OSError)


def _reason(exc: Exception) -> str:
    """Why a delivery failed, in words that cannot carry the URL (some exceptions quote it)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _hosts(hosts: Sequence[str]) -> str:
    shown = ", ".join(hosts[:MAX_HOSTS_IN_TEXT])
    more = f" and {len(hosts) - MAX_HOSTS_IN_TEXT} more" if len(hosts) > MAX_HOSTS_IN_TEXT else ""
    return f"{len(hosts)} host(s) ({shown}{more})"
