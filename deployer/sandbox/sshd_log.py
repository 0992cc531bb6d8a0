"""What each sandbox host's sshd saw, from its own log (LogLevel VERBOSE, `docker logs`): the
tests' witness that a run did (or did not) open sessions, and the benchmark's session counts.

sshd logs one line per session request that starts a process on the host:
    Starting session: command for deploy from 127.0.0.1 port 50414 id 0
    Starting session: subsystem 'sftp' for deploy from 127.0.0.1 port 50424 id 0
(`shell on pts/N` for an interactive shell), and one line per authenticated connection:
    Accepted publickey for deploy from 127.0.0.1 port 50414 ssh2: ED25519 SHA256:...
An exec request is a "command" session; an SFTP transfer is a "subsystem" session. Port
forwards (direct-tcpip channels, which our HTTP health checks use) start no process on the
host and are not counted. Only lines logged since `since` (a UNIX time) are read.
"""

from __future__ import annotations

import re
from collections import Counter

_SESSION = re.compile(r"Starting session: (\w+)(?: '(\w+)')?")
_ACCEPTED = "Accepted publickey for "
# Any line sshd writes for a TCP connection reaching it, authenticated or not.
_CONNECTION = "Connection from "


def count_log(text: str) -> Counter[str]:
    """`sessions` (and per kind: `command`, `subsystem:sftp`), `connections` (authenticated),
    `attempts` (TCP connections that reached sshd)."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _SESSION.search(line)
        if match:
            kind = match.group(1) + (f":{match.group(2)}" if match.group(2) else "")
            counts[kind] += 1
            counts["sessions"] += 1
        elif _ACCEPTED in line:
            counts["connections"] += 1
        elif _CONNECTION in line:
            counts["attempts"] += 1
    return counts
