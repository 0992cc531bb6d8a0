"""Resource use per host, from the same read-only `prepare` session as the rest of status:
load against the CPU count, memory, disk and inodes under deploy_to, and the app's process
found through its pidfile; and the checklist's warning for a host over the limits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    p.playbook(resources={"pidfile": "shared/run/app.pid"})
    first = p.invoke("deploy", "--env", "test")
    assert first.returncode == 0, first.stdout + first.stderr
    return p


def test_status_shows_each_hosts_resources_and_the_apps_process(project: Project) -> None:
    out = project.invoke("status", "--env", "test", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {row["host"]: row for row in json.loads(out.stdout)}
    assert sorted(rows) == HOSTS
    for host in HOSTS:
        r = rows[host]["resources"]
        # What the host itself says, read here from outside the deployer.
        pid = int(project.sh(host, f"cat {APP_ROOT}/shared/run/app.pid").strip())
        cpus = int(project.sh(host, "nproc").strip())
        inodes_total = int(project.sh(host, f"df -Pi {APP_ROOT} | awk 'NR==2{{print $2}}'"))
        assert r["cpus"] == cpus and len(r["load"]) == 3
        assert 0 < r["mem_available_kb"] <= r["mem_total_kb"]
        assert 0 < r["disk_free_kb"] <= r["disk_total_kb"]
        assert r["inodes_total"] == inodes_total
        assert r["app_source"] == f"pidfile {APP_ROOT}/shared/run/app.pid"
        (proc,) = [p for p in r["processes"] if p["pid"] == pid]
        rss = int(project.sh(host, f"awk '/^VmRSS:/{{print $2}}' /proc/{pid}/status"))
        assert proc["name"].startswith("python") and abs(proc["rss_kb"] - rss) < 2048
        assert proc["cpu_percent"] >= 0

    text = project.invoke("status", "--env", "test")
    print(text.stdout)  # noqa: T201 (the docs quote it)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    for host in HOSTS:
        below = lines[lines.index(next(x for x in lines if x.startswith(host))) + 1]
        assert below.lstrip().startswith("load ") and " CPUs, memory " in below
        assert f"app (pidfile {APP_ROOT}/shared/run/app.pid): pid " in below


def test_a_stopped_app_is_shown_as_not_running(project: Project) -> None:
    project.sh("web2", f"kill $(cat {APP_ROOT}/shared/run/app.pid)")
    out = project.invoke("status", "--env", "test")
    web2 = out.stdout.splitlines()
    line = web2[web2.index(next(x for x in web2 if x.startswith("web2"))) + 1]
    assert line.endswith(f"app (pidfile {APP_ROOT}/shared/run/app.pid): not running")


def test_a_nearly_full_disk_is_warned_about_in_the_checklist(project: Project) -> None:
    # Filling a real disk would hit every engineer on the machine: the limit moves instead,
    # above what any host has free, so every host is "nearly full" by the playbook's measure.
    free = int(project.sh("web1", f"df -Pk {APP_ROOT} | awk 'NR==2{{print $4}}'"))
    total = int(project.sh("web1", f"df -Pk {APP_ROOT} | awk 'NR==2{{print $2}}'"))
    assert 100 * free / total < 99.9
    project.playbook(
        resources={"pidfile": "shared/run/app.pid", "warn": {"min_disk_free_percent": 99.9}}
    )
    out = project.invoke("preflight", "--env", "test")
    print(out.stdout)  # noqa: T201 (the docs quote it)
    assert out.returncode == 0, out.stdout + out.stderr  # a warning: not blocking
    lines = out.stdout.splitlines()
    head = next(x for x in lines if "resources" in x and "within their resource limits" in x)
    assert head.split()[0] == "warn"
    for host in HOSTS:
        assert re.search(
            rf"\b{host}: disk free under deploy_to [0-9.]+% is below 99.9%", out.stdout
        )
    strict = project.invoke("preflight", "--env", "test", "--strict")
    assert strict.returncode != 0  # with --strict the warning blocks

    project.playbook(resources={"pidfile": "shared/run/app.pid", "warn": {}})
    ok = project.invoke("preflight", "--env", "test")
    assert any(x.split()[:2] == ["ok", "resources"] for x in ok.stdout.splitlines()), ok.stdout
