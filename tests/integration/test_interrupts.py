"""Ctrl-C and SIGTERM (a cancelled CI job) in the middle of a deploy: the lock is released,
unfinished staged releases are removed, every host is on a complete release, and the summary
says which host runs which release. The interrupt lands while a local hook is running, so the
moment is chosen by the test, not by a timer racing the deploy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(strategy={"serial": [2]})
    return p


def start_deploy(project: Project) -> subprocess.Popen[str]:
    invoke = Path(sys.executable).with_name("invoke")
    return subprocess.Popen(
        [str(invoke), "deploy", "--env", "test"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"deploy ended before the hook ran:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("hook never ran")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_before_any_switch_leaves_every_host_on_its_release(
    project: Project, sig: signal.Signals
) -> None:
    first = project.deploy()["web1"]
    marker = project.root / "hook-ran"
    project.playbook(hooks={"after_stage": [{"local": f"touch {marker}; sleep 30"}]})
    (project.app / "VERSION_NOTE").write_text("next\n")
    proc = start_deploy(project)
    wait_for(marker, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    for host in HOSTS:
        assert project.current(host) == first
        assert project.releases(host) == [first]  # the staged one is gone
        assert not project.locked(host)
        assert project.leftovers(host) == []
        assert f"  {host}" in out and first in out  # the summary


def test_sigterm_mid_rollout_keeps_switched_hosts_and_cleans_the_rest(project: Project) -> None:
    first = project.deploy()["web1"]
    marker = project.root / "hook-ran"
    hook = f'if [ "$DEPLOY_HOSTS" = "web3 web4" ]; then touch {marker}; sleep 30; fi'
    project.playbook(hooks={"before_switch": [{"local": hook}]})
    (project.app / "VERSION_NOTE").write_text("next\n")
    proc = start_deploy(project)
    wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    second = project.current("web1")
    assert second not in (None, first)
    assert project.current("web2") == second
    for host in ("web3", "web4"):
        assert project.current(host) == first
        assert project.releases(host) == [first]
    for host in HOSTS:
        assert not project.locked(host)
        assert project.complete(host, project.current(host) or "")
    # The summary says who runs what.
    assert f"web1     {second}" in out and f"web3     {first}" in out
