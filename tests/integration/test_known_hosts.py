"""Issue 14, section 3, against real hosts: host keys are checked against every known_hosts
file OpenSSH reads, not only the first. Each CLI run gets its own HOME, so ~/.ssh is the
test's."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import Project, make_project

TARGETS = ["web1", "web2"]


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet, hosts=TARGETS)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    return ssh.parent


def key_lines(project: Project) -> dict[str, str]:
    """Each host's line in the fleet's known_hosts, by host name."""
    lines = project.fleet.known_hosts_path.read_text().splitlines()
    by_address = {line.split(" ", 1)[0]: line for line in lines if line.strip()}
    return {h: by_address[f"[{project.fleet.host(h).address}]:2222"] for h in TARGETS}


def use_known_hosts(project: Project, text: str) -> Path:
    """The inventory's own ssh_known_hosts_file, with this content."""
    path = project.root / "known_hosts"
    path.write_text(text)
    inv = project.root / "inventories" / "test.yml"
    inv.write_text(inv.read_text().replace(str(project.fleet.known_hosts_path), str(path)))
    return path


def nothing_deployed(project: Project) -> None:
    for host in TARGETS:
        assert project.current(host) is None
        assert not project.locked(host)


def test_a_conflicting_key_pinned_in_a_second_known_hosts_file_is_refused(
    project: Project, home: Path
) -> None:
    """Written for issue 14: only the first file was read, so --accept-new-host-keys took
    web1's key as unknown and recorded it, though ~/.ssh/known_hosts2 pins another one."""
    lines = key_lines(project)
    mine = use_known_hosts(project, lines["web2"] + "\n")  # web1 not in the inventory's file
    web1_name = lines["web1"].split(" ", 1)[0]
    forged = f"{web1_name} {lines['web2'].split(' ', 1)[1]}\n"  # web2's key under web1's name
    second = home / ".ssh" / "known_hosts2"
    second.write_text("# pinned by hand\n" + forged)
    env: dict[str, str | None] = {"HOME": str(home), "SSH_AUTH_SOCK": None}
    out = project.invoke("deploy", "--env", "test", "--accept-new-host-keys", env=env)
    assert out.returncode == 5, out.stdout + out.stderr
    assert f"HOST KEY CHANGED for {web1_name}" in out.stderr
    assert f"({second}:2)" in out.stderr
    assert mine.read_text() == lines["web2"] + "\n"  # the presented key was not recorded
    nothing_deployed(project)


def test_a_revoked_key_in_the_global_file_is_refused_though_another_file_trusts_it(
    project: Project, home: Path
) -> None:
    lines = key_lines(project)
    use_known_hosts(project, "".join(line + "\n" for line in lines.values()))
    revoked = home / "ssh_known_hosts"
    revoked.write_text(f"@revoked * {lines['web2'].split(' ', 1)[1]}\n")
    (home / ".ssh" / "config").write_text(f"Host *\n    GlobalKnownHostsFile {revoked}\n")
    env: dict[str, str | None] = {"HOME": str(home), "SSH_AUTH_SOCK": None}
    out = project.invoke("deploy", "--env", "test", "--accept-new-host-keys", env=env)
    assert out.returncode == 5, out.stdout + out.stderr
    web2_name = lines["web2"].split(" ", 1)[0]
    assert f"REVOKED host key for {web2_name}" in out.stderr
    assert f"marked @revoked in {revoked}:1" in out.stderr
    nothing_deployed(project)
    # Without the revocation, the same run deploys: the refusal was the revoked line's.
    revoked.write_text("")
    out = project.invoke("deploy", "--env", "test", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert project.current("web1") == project.current("web2") is not None
