"""Runs scripts on hosts: one step on one host (with events and error mapping), and the same
function over many hosts with bounded concurrency. Knows nothing about deploy phases."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from deployer.config.model import Host
from deployer.errors import DeployerError, RemoteCommandError
from deployer.events import EventBus, StepFinished, StepStarted, UploadProgress
from deployer.remote.scripts import MARK
from deployer.remote.shell import Script
from deployer.remote.transport import Result, Transport
from deployer.secrets import redact

T = TypeVar("T")
R = TypeVar("R")

OUTPUT_TAIL_LINES = 20


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def operator() -> str:
    """Who is deploying: the CI's actor when there is one, else the local user."""
    for var in ("DEPLOYER_USER", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def lock_info(run_id: str, action: str, release: str | None) -> str:
    return json.dumps(
        {
            "run_id": run_id,
            "user": operator(),
            "from": socket.gethostname(),
            "pid": os.getpid(),
            "action": action,
            "release": release,
            "started": utc_now(),
        },
        sort_keys=True,
    )


def last_substep(output: str, default: str) -> str:
    step = default
    for line in output.splitlines():
        if line.startswith(MARK + "step "):
            step = line[len(MARK) + 5 :].strip()
    return step


def output_tail(output: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last lines of a step's output, secrets masked: what events and errors carry.
    Masked before cutting, so a secret split by the cut cannot show its second half."""
    kept = [line for line in redact(output).splitlines() if not line.startswith(MARK)]
    return "\n".join(kept[-lines:])


class Runner:
    def __init__(
        self,
        transport: Transport,
        bus: EventBus,
        *,
        parallel: int = 20,
        command_timeout: float = 600.0,
    ) -> None:
        self.transport = transport
        self.bus = bus
        self.command_timeout = command_timeout
        # Set on Ctrl-C/SIGTERM: uploads stop streaming and health waits give up at once.
        self.cancelled = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="host")

    def step(
        self, host: Host, script: Script, *, timeout: float | None = None, progress: bool = False
    ) -> Result:
        """Run one script; a non-zero exit raises RemoteCommandError naming the sub-step."""
        self.bus.emit(StepStarted(host=host.name, step=script.step, command=script.render()))
        started = time.monotonic()
        on_progress = None
        if progress:
            last = [0.0]

            def on_progress(sent: int, total: int) -> None:
                now = time.monotonic()
                if sent == total or now - last[0] > 0.5:
                    last[0] = now
                    self.bus.emit(UploadProgress(host=host.name, sent=sent, total=total))

        try:
            result = self.transport.run(
                host,
                script,
                timeout=timeout or self.command_timeout,
                on_progress=on_progress,
                cancel=self.cancelled,
            )
        except DeployerError as exc:
            self.bus.emit(
                StepFinished(
                    host=host.name,
                    step=script.step,
                    ok=False,
                    duration=time.monotonic() - started,
                    error=redact(str(exc)),
                )
            )
            raise
        tail = output_tail(result.output)
        if not result.ok:
            sub = last_substep(result.output, script.step)
            # Output is what a host printed: it may echo a secret it read from a file.
            error = RemoteCommandError(
                host.name, sub, result.exit_code, tail, full_output=redact(result.output)
            )
            self.bus.emit(
                StepFinished(
                    host=host.name,
                    step=script.step,
                    ok=False,
                    duration=result.duration,
                    output=tail,
                    error=str(error),
                )
            )
            raise error
        self.bus.emit(
            StepFinished(
                host=host.name, step=script.step, ok=True, duration=result.duration, output=tail
            )
        )
        return result

    def connect_ahead(self, hosts: Sequence[Host]) -> None:
        """Open these hosts' connections in the background (nothing runs on them), so their
        first step need not wait for the SSH handshake. Errors surface at that step."""
        for host in hosts:
            self._pool.submit(self.transport.connect, host)

    def each(
        self, items: Sequence[N], fn: Callable[[N], R], *, shield: bool = False
    ) -> dict[str, R | DeployerError]:
        """Apply `fn` to every item concurrently. Per-item DeployerErrors are collected, not
        raised. On Ctrl-C the in-flight work is allowed to finish before re-raising, so no
        host is left mid-step by us. With `shield`, work not yet started runs too (a second
        Ctrl-C gives up on it): for short steps that must reach every host, like finish."""
        futures: dict[str, Future[R]] = {item.name: self._pool.submit(fn, item) for item in items}
        try:
            wait(futures.values())
        except BaseException:
            if shield:
                with contextlib.suppress(BaseException):  # a second Ctrl-C: give up, below
                    wait(futures.values())
                if all(future.done() for future in futures.values()):
                    raise
            self.cancelled.set()
            for future in futures.values():
                future.cancel()
            wait(futures.values())
            raise
        results: dict[str, R | DeployerError] = {}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except DeployerError as exc:
                results[name] = exc
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.transport.close()


def failures(results: dict[str, T | DeployerError]) -> dict[str, DeployerError]:
    return {name: r for name, r in results.items() if isinstance(r, DeployerError)}
