"""Delta uploads (issue: performance): a redeploy sends only what changed and hard-links the
rest from the previous release on each host; every release stays complete and immutable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer import api
from deployer.events import Event, Notice, UploadProgress
from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    vendor = p.app / "vendor"
    vendor.mkdir()
    for n in range(200):  # some bulk, so that a delta is visibly smaller
        (vendor / f"mod{n:03d}.py").write_bytes(os.urandom(2000).hex().encode())
    return p


def deploy(project: Project) -> tuple[str, list[Event]]:
    events: list[Event] = []
    result = api.deploy(project.load(), api.Options(reporters=[events.append]))
    assert isinstance(result, dict)
    return result["web1"] or "", events


def sent(events: list[Event]) -> int:
    return sum(e.total for e in events if isinstance(e, UploadProgress) and e.sent == e.total)


def inode(project: Project, host: str, release: str, path: str) -> str:
    return project.sh(host, f"stat -c %i {APP_ROOT}/releases/{release}/{path}").strip()


def test_redeploy_sends_only_the_changed_file_and_links_the_rest(project: Project) -> None:
    first, events1 = deploy(project)
    (project.app / "vendor" / "mod007.py").write_text("changed = True\n")
    (project.app / "vendor" / "mod008.py").unlink()
    (project.app / "bin" / "extra-tool").write_text("#!/bin/sh\necho tool\n")
    (project.app / "bin" / "extra-tool").chmod(0o755)
    second, events2 = deploy(project)
    assert first != second
    notices = [e.text for e in events2 if isinstance(e, Notice)]
    assert any("delta upload to 4 host(s): 2 changed" in n for n in notices), notices
    assert sent(events2) < sent(events1) * 0.25, (sent(events1), sent(events2))
    for host in HOSTS:
        assert project.complete(host, second)
        assert project.health(host)[1]["version"] == second
        # Unchanged files are the very same inodes; the changed one is new.
        assert inode(project, host, first, "app.py") == inode(project, host, second, "app.py")
        assert inode(project, host, first, "vendor/mod007.py") != inode(
            project, host, second, "vendor/mod007.py"
        )
        code, _ = project.fleet.exec(host, f"test -e {APP_ROOT}/releases/{second}/vendor/mod008.py")
        assert code != 0  # removed files do not come back
        assert project.sh(host, f"{APP_ROOT}/releases/{second}/bin/extra-tool").strip() == "tool"
        # The previous release was not touched by linking (still read-only and verifying).
        assert project.complete(host, first)


def test_hosts_on_a_different_release_get_the_full_archive(project: Project) -> None:
    deploy(project)
    # The leader alone moves on: the others no longer match its baseline and get it all.
    (project.app / "VERSION_NOTE").write_text("web1 only\n")
    api.deploy(project.load(limit="web1"), api.Options())
    (project.app / "VERSION_NOTE").write_text("everyone\n")
    latest, events = deploy(project)
    full = {e.host for e in events if isinstance(e, UploadProgress) and e.total > 100_000}
    assert full == {"web2", "web3", "web4"}
    for host in HOSTS:
        assert project.current(host) == latest and project.complete(host, latest)
