"""A transport for unit tests: records every script it is asked to run and answers from a
responder function, so orchestration can be tested without hosts. Never used by a real run."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deployer.config.model import Host
from deployer.remote.shell import Script
from deployer.remote.transport import Progress, Result

Responder = Callable[[Host, Script], Result]
HttpResponder = Callable[[Host, str, int], bytes]


def prepare_output(
    *,
    lock: str = "acquired",
    current: str = "",
    releases: Sequence[str] = (),
    history: Sequence[str] = (),
    lockinfo: str | None = None,
    lockage: int | None = None,
    free_kb: int = 999999,
) -> str:
    """What `scripts.prepare` prints on a host in this state (file contents base64-encoded)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    out = [f"@@lock {lock}"]
    if lockinfo is not None:
        out.append(f"@@lockinfo {b64(lockinfo)}")
    if lockage is not None:
        out.append(f"@@lockage {lockage}")
    out += [
        f"@@current {b64(current)}",
        f"@@releases {b64(''.join(r + chr(10) for r in releases))}",
        f"@@history {b64(''.join(h + chr(10) for h in history))}",
        f"@@df {free_kb}",
        "@@end",
    ]
    return "\n".join(out) + "\n"


def default_responder(host: Host, script: Script) -> Result:
    if script.step == "prepare":
        return Result(0, prepare_output())
    return Result(0, "")


@dataclass
class RecordingTransport:
    responder: Responder = default_responder
    http: HttpResponder = lambda host, address, port: b"HTTP/1.0 200 OK\r\n\r\n{}"  # noqa: E731
    calls: list[tuple[str, Script]] = field(default_factory=list)
    tcp: list[tuple[str, str, int]] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)  # hosts connected ahead of a command
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self,
        host: Host,
        script: Script,
        *,
        timeout: float,
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        with self._lock:
            self.calls.append((host.name, script))
        if on_progress and script.stdin.segments:
            on_progress(script.stdin.size, script.stdin.size)
        return self.responder(host, script)

    def open_tcp(self, host: Host, address: str, port: int, *, timeout: float) -> _FakeChannel:
        with self._lock:
            self.tcp.append((host.name, address, port))
        return _FakeChannel(self.http(host, address, port))

    def connect(self, host: Host) -> None:
        with self._lock:
            self.connected.append(host.name)

    def close(self) -> None:
        pass

    def steps(self, host: str) -> list[str]:
        return [s.step for h, s in self.calls if h == host]


class _FakeChannel:
    def __init__(self, response: bytes) -> None:
        self._response = response
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        out, self._response = self._response[:size], self._response[size:]
        return out

    def close(self) -> None:
        pass
