"""What a deploy costs each host, read from the hosts' own sshd logs (LogLevel VERBOSE), not
from the deployer's events: one SSH connection per host, and one exec session per phase."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


def test_a_deploy_opens_one_connection_and_one_exec_session_per_phase_per_host(
    project: Project,
) -> None:
    project.deploy()  # the first deploy; the second is the one measured (delta, pruning)
    (project.app / "VERSION_NOTE").write_text("second\n")
    since = time.time()
    project.deploy()
    counts = project.fleet.sshd_counts(since)
    for host in HOSTS:
        # prepare (lock + facts), stage, switch (+ restart), finish; migrate on web1 only.
        # Health checks ride a direct-tcpip channel: no session.
        expected = 5 if host == "web1" else 4
        assert counts[host]["command"] == expected, (host, dict(counts[host]))
        assert counts[host]["sessions"] == expected, (host, dict(counts[host]))
        assert counts[host]["connections"] == 1, (host, dict(counts[host]))
    assert sum(counts["web5"].values()) == 0  # not in the inventory: never contacted
