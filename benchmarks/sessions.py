"""Counting what each host's sshd saw, from its own log (LogLevel VERBOSE, `docker logs`).

sshd logs one line per session request that starts a process on the host:
    Starting session: command for deploy from 127.0.0.1 port 50414 id 0
    Starting session: subsystem 'sftp' for deploy from 127.0.0.1 port 50424 id 0
(`shell on pts/N` for an interactive shell), and one line per authenticated connection:
    Accepted publickey for deploy from 127.0.0.1 port 50414 ssh2: ED25519 SHA256:...
An exec request is a "command" session; an SFTP transfer is a "subsystem" session. Port
forwards (direct-tcpip channels, which our HTTP health checks use) start no process on the
host and are not counted. Only lines logged since the run started are read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import docker

_SESSION = re.compile(r"Starting session: (\w+)(?: '(\w+)')?")
_ACCEPTED = "Accepted publickey for "


def host_log_counts(client: docker.DockerClient, container_id: str, since: float) -> Counter[str]:
    text = client.containers.get(container_id).logs(since=since).decode(errors="replace")
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _SESSION.search(line)
        if match:
            kind = match.group(1) + (f":{match.group(2)}" if match.group(2) else "")
            counts[kind] += 1
            counts["sessions"] += 1
        elif _ACCEPTED in line:
            counts["connections"] += 1
    return counts


def fleet_counts(
    client: docker.DockerClient, containers: Sequence[tuple[str, str]], since: float
) -> dict[str, Counter[str]]:
    """host name -> counts, for (host name, container id) pairs."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = pool.map(lambda item: host_log_counts(client, item[1], since), containers)
        return {name: counts for (name, _), counts in zip(containers, results, strict=True)}
