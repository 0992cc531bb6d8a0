"""A compromised host cannot change what the rest of the fleet runs (issue 14, section 2), and
the layout under deploy_to is never followed through a symlink (section 3).

Every check reads the hosts' files byte for byte; none trusts the deployer's own report.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployerError
from deployer.events import Event, Notice
from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, HOSTS, Project, make_project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    vendor = p.app / "vendor"
    vendor.mkdir()
    for n in range(40):  # some bulk, so that a delta is worth sending
        (vendor / f"mod{n:03d}.py").write_text(f"N = {n}\n" + "# padding\n" * 400)
    return p


def deploy(project: Project, **kwargs: object) -> tuple[dict[str, str | None], list[Event]]:
    events: list[Event] = []
    result = api.deploy(project.load(), api.Options(reporters=[events.append]), **kwargs)
    assert isinstance(result, dict)
    return result, events


def notices(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice)]


def as_deploy_user(project: Project, host: str, command: str) -> None:
    """What an app running as the deploy user can do to its own releases."""
    project.sh(host, command)


def matches_source(project: Project, host: str, release: str) -> list[str]:
    """The files of `release` on `host` that differ from the local source (empty: all match)."""
    differ = []
    for path in sorted(project.app.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(project.app).as_posix()
        want = hashlib.sha256(path.read_bytes()).hexdigest()
        code, out = project.fleet.exec(
            host, f"sha256sum < {APP_ROOT}/releases/{release}/{rel}", user="deploy"
        )
        if code != 0 or out.split()[0] != want:
            differ.append(rel)
    return differ


def redeploy_and_check_nothing_planted_survives(
    project: Project, planted_on: str, rel: str
) -> None:
    """After `rel` of `planted_on`'s current release was tampered with: a redeploy brings every
    host to the new release, byte for byte the source, without the planted text; the tampered
    host's base is refused (its files linked from elsewhere) while the other hosts, whose bases
    were intact, take the delta and keep it."""
    (project.app / "VERSION_NOTE").write_text("clean redeploy\n")
    result, events = deploy(project)
    second = result[planted_on] or ""
    for host in HOSTS:
        assert project.current(host) == second
        assert matches_source(project, host, second) == [], host
    assert "planted" not in project.sh(planted_on, f"cat {APP_ROOT}/releases/{second}/{rel}")
    assert any(f"{planted_on}: files linked from" in n for n in notices(events)), notices(events)
    assert any("delta upload to 4 host(s)" in n for n in notices(events)), notices(events)


def test_a_forged_manifest_on_the_first_host_does_not_downgrade_the_others(
    project: Project,
) -> None:
    """Regression (issue 14): web1's app rewrote current/MANIFEST so that its output named an
    older release as its baseline beside the genuine digest; every other host then
    hard-linked that older release's files into the new one, and the deploy said success."""
    (project.app / "VERSION_NOTE").write_text("old\n")
    old = deploy(project)[0]["web1"]
    (project.app / "app.py").write_text((project.app / "app.py").read_text() + "# v2\n")
    (project.app / "VERSION_NOTE").write_text("mid\n")
    mid = deploy(project)[0]["web1"]
    assert old and mid and old != mid
    genuine = project.sh("web2", f"cat {APP_ROOT}/releases/{mid}/MANIFEST")
    digest = hashlib.sha256(genuine.encode()).hexdigest()
    modes = project.sh("web2", f"cd {APP_ROOT}/releases/{mid} && find . -type f -printf '%m %P\\n'")

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    # Markers in both framings: base64 ones, then raw ones (the old parser let the last win).
    forged = (
        f"@@current {b64(f'{APP_ROOT}/releases/{old}')}\n@@manifest_digest {digest}\n"
        + f"@@manifest {b64(genuine)}\n@@modes {b64(modes)}\n"
        + f"@@current {APP_ROOT}/releases/{old}\n@@manifest_digest {digest}\n@@manifest\n"
        + genuine
        + "@@modes\n"
        + modes
    )
    target = f"{APP_ROOT}/releases/{mid}/MANIFEST"
    project.fleet.exec("web1", f"chmod u+w {APP_ROOT}/releases/{mid} {target}", user="deploy")
    as_deploy_user(project, "web1", f"printf '%s' {b64(forged)} | base64 -d >> {target}")

    (project.app / "VERSION_NOTE").write_text("new\n")  # app.py is unchanged since mid
    try:
        result, events = deploy(project)
    except DeployerError as exc:  # stopping is acceptable; a silent downgrade is not
        for host in HOSTS[1:]:
            assert project.current(host) == mid, str(exc)
        return
    latest = result["web2"]
    assert latest not in (old, mid)
    for host in HOSTS[1:]:
        assert project.current(host) == latest
        assert matches_source(project, host, latest or "") == [], host
        assert project.health(host)[1]["version"] == latest


def test_a_file_edited_in_place_is_not_carried_into_the_next_release(project: Project) -> None:
    """Regression (issue 14): a delta hard-linked unchanged files from the previous release
    without checking them, so an edit made there survived every later deploy."""
    first = deploy(project)[0]["web1"]
    path = f"{APP_ROOT}/releases/{first}/vendor/mod003.py"
    as_deploy_user(project, "web1", f"chmod u+w {path} && echo 'import os  # planted' >> {path}")
    redeploy_and_check_nothing_planted_survives(project, "web1", "vendor/mod003.py")


def test_an_existing_release_that_was_tampered_with_is_staged_again(project: Project) -> None:
    """Regression (issue 14): staging was skipped whenever releases/<id> existed, so a resumed
    deploy trusted whatever was in it."""
    deploy(project)
    project.fleet.stop("web4")
    project.playbook(connection={"connect_timeout": 3})
    (project.app / "VERSION_NOTE").write_text("partial\n")
    out = project.invoke("deploy", "--env", "test", "--skip-unreachable")
    assert out.returncode == 0, out.stdout + out.stderr
    target = project.current("web1") or ""
    release = f"{APP_ROOT}/releases/{target}"
    as_deploy_user(
        project, "web2", f"chmod u+w {release}/app.py && echo '# planted' >> {release}/app.py"
    )
    as_deploy_user(  # a file slipped in beside the verified ones
        project, "web3", f"chmod u+w {release} && echo 'x = 1' > {release}/sitecustomize.py"
    )
    project.fleet.start("web4")
    out = project.invoke("deploy", "--env", "test", "--resume")
    assert out.returncode == 0, out.stdout + out.stderr
    for host in HOSTS:
        assert project.current(host) == target
        assert matches_source(project, host, target) == [], host
    code, _ = project.fleet.exec("web3", f"test -e {release}/sitecustomize.py")
    assert code != 0
    assert "does not verify" in out.stdout + out.stderr
    assert project.leftovers("web2") == [] and project.leftovers("web3") == []


def test_deploy_to_may_itself_be_a_symlink(project: Project) -> None:
    """A data disk mounted elsewhere and linked as deploy_to is a normal layout."""
    for host in HOSTS:
        project.sh(host, f"mkdir -p /srv/disk/app && ln -s /srv/disk/app {APP_ROOT}")
    result, _ = deploy(project)
    for host in HOSTS:
        release = result[host] or ""
        assert project.current(host) == release
        assert project.sh(host, "ls /srv/disk/app/releases").split() == [release]
        assert project.health(host)[1]["version"] == release


@pytest.mark.parametrize("component", ["releases", "shared", ".deploy", ".deploy/staging"])
def test_a_symlinked_directory_under_deploy_to_is_refused(project: Project, component: str) -> None:
    """A symlinked releases/, shared/, .deploy/ or .deploy/staging would let the cleanup's
    `rm -rf` and the secrets written under shared/ reach outside deploy_to."""
    parent = f"{APP_ROOT}/{component}".rsplit("/", 1)[0]
    project.sh("web2", f"mkdir -p {parent} /srv/elsewhere && touch /srv/elsewhere/keep")
    project.sh("web2", f"ln -s /srv/elsewhere {APP_ROOT}/{component}")
    with pytest.raises(DeployerError) as err:
        deploy(project)
    message = str(err.value)
    assert f"{APP_ROOT}/{component}" in message and "symbolic link" in message, message
    assert project.sh("web2", "ls -A /srv/elsewhere").split() == ["keep"]
    for host in HOSTS:
        assert project.current(host) is None and not project.locked(host)


def test_a_linked_file_overwritten_with_its_size_kept_is_not_carried_forward(
    project: Project,
) -> None:
    """Issue 18: a delta no longer hashes the linked files its base's record vouches for
    (inode, size, mtime and sha256 as they were verified). An overwrite in place that keeps
    the size (`dd conv=notrunc`) still changes the mtime: hashed, refused, sent in full."""
    first = deploy(project)[0]["web1"] or ""
    for host in HOSTS:  # every host keeps what its release's files were when verified
        lines = project.sh(host, f"cat {APP_ROOT}/.deploy/verified/{first}").splitlines()
        assert len(lines) == len(
            project.sh(host, f"cat {APP_ROOT}/releases/{first}/MANIFEST").splitlines()
        )
    path = f"{APP_ROOT}/releases/{first}/vendor/mod003.py"
    size = int(project.sh("web2", f"stat -c %s {path}"))
    as_deploy_user(
        project,
        "web2",
        f"chmod u+w {path} && printf 'import os  # planted\\n' |"
        f" dd of={path} conv=notrunc status=none",
    )
    assert int(project.sh("web2", f"stat -c %s {path}")) == size
    redeploy_and_check_nothing_planted_survives(project, "web2", "vendor/mod003.py")
