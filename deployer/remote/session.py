"""One exec session per host that runs every step with small stdin, one after another.

Each step used to be an SSH exec session of its own: a channel opened, an exec request, the
window, EOF and close on both sides, and the script's output in as many packets as it had
writes. paramiko does that protocol work in Python, on the deploying machine, for every host:
on a 40-host deploy it was most of the controller's CPU that grew with the fleet (issue 18).
Here the host's first step starts a small loop in bash (`SERVER`) and every later step is a
short exchange on that one channel:

    controller -> host   "<nonce> <script bytes>\\n" and the gzip'd script
    host -> controller   "@@ready <nonce>\\n": the script arrived whole and unpacked
    controller -> host   "go <nonce> <stdin bytes>\\n" and the stdin
    host -> controller   the step's output (stdout and stderr, in the order written), then
                         "\\n@@done <nonce> <exit code>\\n", in one write (dd buffers it)

Nothing runs before "go", and "go" is sent only while the step's deadline has not passed: a
host that stopped (a frozen VM, a paused container) and wakes after the deployer gave up on the
step finds its connection closed instead of a "go", and runs nothing, as an exec request that
was never answered ran nothing. Each step still runs in a fresh `bash -c` with the login
environment and in a process group of its own, exactly as an exec session ran it; the loop's
own variables are not exported. Its
stdin is exactly the bytes sent with it (`head -c`), drained after it exits so the next header
is read where it starts. The nonce is random per step: output cannot end a step early. The
script always travels gzip'd, so that a frame cut short (the deploying machine died while
sending) fails to unpack instead of running the part that arrived. Anything the loop cannot
read (a bad header, a payload that does not unpack, a "go" for another step) ends the loop, and
with it the session: the step fails as a lost connection, having run nothing.

Steps with large stdin (the release archive streamed by the SSH push) keep their own exec
session, as does a step that arrives while the host's loop is busy; see `SSHTransport.run`.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import secrets
import threading
import time
from collections.abc import Callable

import paramiko

from deployer.remote.shell import Script, cmd

# At most this much stdin goes through the loop (held in memory while it is sent: 40 hosts at
# once hold at most 10 MiB); more streams through an exec session of its own, with progress
# and cancellation.
STDIN_LIMIT = 256 * 1024

_LOOP = (
    "while IFS=' ' read -r n s; do "
    "case $n$s in ''|*[!0-9a-f]*) exit 65;; esac; "
    'c=$(head -c "$s" | gzip -dc) || exit 65; '
    "printf '@@ready %s\\n' \"$n\"; "
    "IFS=' ' read -r g m i || exit 0; "
    'case "$g $m $i" in "go $n "[0-9]*) ;; *) exit 65;; esac; '
    "case $i in *[!0-9]*) exit 65;; esac; "
    # set -m: the step gets a process group of its own, as an exec session's command has,
    # so `kill 0` (or a trap doing it) ends the step and not the loop. Job notices: dropped.
    'head -c "$i" | { set -m; bash -c "$c" 2>&1 <&0 & wait $!; r=$?; cat >/dev/null; '
    'printf \'\\n@@done %s %s\\n\' "$n" "$r"; } 2>/dev/null | dd obs=1M status=none; '
    "done"
)
SERVER = cmd("bash", "-c", _LOOP)

_DONE = re.compile(rb"\n@@done ([0-9a-f]{32}) (\d+)\n\Z")


class SessionLost(Exception):
    """The loop ended or the channel closed before the step's end marker arrived."""


def frame(script: Script, nonce: str) -> bytes:
    """What asks the loop to get `script` ready to run."""
    payload = gzip.compress(script.render().encode(), mtime=0)
    return f"{nonce} {len(payload)}\n".encode() + payload


def ready(nonce: str) -> bytes:
    """The loop's answer once the script is unpacked."""
    return f"@@ready {nonce}\n".encode()


def go(nonce: str, stdin: bytes) -> bytes:
    """What lets the loop run the script it holds, with `stdin`."""
    return f"go {nonce} {len(stdin)}\n".encode() + stdin


def parse_end(buffer: bytes, nonce: str) -> tuple[int, bytes] | None:
    """(exit code, output) once `buffer` ends with this step's marker; None until then."""
    match = _DONE.search(buffer, max(0, len(buffer) - 64))
    if match is None or match.group(1).decode() != nonce:
        return None
    return int(match.group(2)), buffer[: match.start()]


class StepSession:
    """The loop on one host, over one channel. Not thread-safe: the transport holds the
    host's lock around `run`."""

    def __init__(self, transport: paramiko.Transport, *, open_timeout: float) -> None:
        self._chan = transport.open_session(timeout=open_timeout)
        self._chan.exec_command(SERVER)

    def run(self, script: Script, stdin: bytes, deadline: float) -> tuple[int, str]:
        """Raises TimeoutError past `deadline`, SessionLost when the loop is gone, OSError or
        paramiko.SSHException when the connection is."""
        nonce = secrets.token_hex(16)
        self._chan.sendall(frame(script, nonce))
        # What a login shell prints before the loop starts may come first: it is not ours.
        self._read(deadline, lambda tail: tail.endswith(ready(nonce)))
        self._chan.sendall(go(nonce, stdin))
        got = self._read(deadline, lambda tail: parse_end(tail, nonce) is not None)
        end = parse_end(got, nonce)
        assert end is not None  # _read returns once the buffer ends with the marker
        return end[0], end[1].decode("utf-8", errors="replace")

    def _read(self, deadline: float, complete: Callable[[bytes], bool]) -> bytes:
        """What the loop sends until `complete` holds for its last 64 bytes."""
        chunks: list[bytes] = []
        tail = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._chan.settimeout(remaining)
            data = self._chan.recv(65536)
            if not data:
                raise SessionLost("the host's step loop ended")
            chunks.append(data)
            tail = (tail + data)[-64:]
            if complete(tail):
                return b"".join(chunks)

    def ended(self) -> bool:
        """The host closed the loop's channel, or the loop exited: no step can run in it."""
        chan = self._chan
        return bool(chan.closed or chan.eof_received or chan.exit_status_ready())

    def close(self) -> None:
        self._chan.close()


def small_stdin(script: Script) -> bytes | None:
    """The script's stdin in memory when it may travel through the loop; None when it is
    larger than STDIN_LIMIT (or a file that cannot be read now: the exec path reports it)."""
    try:
        if script.stdin.size > STDIN_LIMIT:
            return None
        return b"".join(
            s if isinstance(s, bytes) else s.read_bytes() for s in script.stdin.segments
        )
    except OSError:
        return None


class StepSessions:
    """Each host's loop, started on its first step and kept for the run. A step that arrives
    while its host's loop is busy (two steps on one host at once) is not queued: `run`
    returns None and the caller gives it an exec session of its own."""

    def __init__(self, open_timeout: float) -> None:
        self.open_timeout = open_timeout
        self._sessions: dict[str, StepSession] = {}
        self._busy: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(
        self,
        name: str,
        transport: paramiko.Transport,
        script: Script,
        stdin: bytes,
        deadline: float,
    ) -> tuple[int, str] | None:
        with self._guard:
            busy = self._busy.setdefault(name, threading.Lock())
        if not busy.acquire(blocking=False):
            return None
        try:
            session = self._sessions.get(name)
            if session is not None and session.ended():
                # Closed while idle (sshd's ChannelTimeout, the loop killed on the host):
                # nothing of this step was sent yet, so a new loop can take it.
                self._sessions.pop(name, None)
                session = None
            if session is None:
                session = StepSession(transport, open_timeout=self.open_timeout)
                self._sessions[name] = session
            try:
                return session.run(script, stdin, deadline)
            except BaseException:
                # Mid-frame: what the loop reads next is unknown. Never reuse it.
                self._sessions.pop(name, None)
                with contextlib.suppress(Exception):
                    session.close()
                raise
        finally:
            busy.release()

    def forget(self, name: str) -> None:
        """The host's connection is gone (its loop with it)."""
        self._sessions.pop(name, None)

    def clear(self) -> None:
        self._sessions.clear()
