"""Counting what each host's sshd saw, for the benchmark: the parsing lives with the sandbox
(`deployer.sandbox.sshd_log`), where the integration tests use it too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import docker

from deployer.sandbox.sshd_log import count_log


def host_log_counts(client: docker.DockerClient, container_id: str, since: float) -> Counter[str]:
    return count_log(client.containers.get(container_id).logs(since=since).decode(errors="replace"))


def fleet_counts(
    client: docker.DockerClient, containers: Sequence[tuple[str, str]], since: float
) -> dict[str, Counter[str]]:
    """host name -> counts, for (host name, container id) pairs."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = pool.map(lambda item: host_log_counts(client, item[1], since), containers)
        return {name: counts for (name, _), counts in zip(containers, results, strict=True)}
