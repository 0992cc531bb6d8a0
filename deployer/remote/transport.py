"""The narrow interface between orchestration and hosts: run a `Script` (with streamed stdin)
and open a TCP channel through the host. Implementations: `SSHTransport` (real hosts) and
`RecordingTransport` (unit tests). The orchestrator never touches paramiko itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from deployer.config.model import Host
from deployer.remote.shell import Script

Progress = Callable[[int, int], None]  # (bytes sent so far, total bytes)


@dataclass(frozen=True)
class Result:
    exit_code: int
    output: str  # stdout and stderr, interleaved as the host wrote them
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Channel(Protocol):
    """A byte stream through the host (socket-like)."""

    def sendall(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...
    def close(self) -> None: ...


class Transport(Protocol):
    def run(
        self,
        host: Host,
        script: Script,
        *,
        timeout: float,
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run one script in one exec session. Raises TransportError when the host cannot be
        reached or stops answering; a non-zero exit is a `Result`, not an exception.
        Setting `cancel` stops streaming stdin (the remote side then discards what it got);
        a command that is already running is left to finish."""
        ...

    def open_tcp(self, host: Host, address: str, port: int, *, timeout: float) -> Channel:
        """Open a TCP connection to address:port as seen from the host."""
        ...

    def connect(self, host: Host) -> None:
        """Open the host's connection ahead of its first command; runs nothing on the host.
        Never raises: a failure is raised by the host's next `run` or `open_tcp`."""
        ...

    def close(self) -> None: ...
