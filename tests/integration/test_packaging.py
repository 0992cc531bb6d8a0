"""The package as a new user gets it (issue 13): the wheel and sdist built with `python -m
build`, the wheel installed into a fresh virtual environment outside the checkout, then
`shipfleet --version`, `--list`, `init` in an empty directory, and a dry run and a real deploy
of that freshly initialised project to the sandbox fleet, with no other edit than the
inventory's addresses. Keys, port and known_hosts come from the test's own ~/.ssh/config, as
a user's would.

It deploys, so it lives with the integration tests; the build and install take about 30 s
(dependencies from the package index, through pip's cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from deployer import __version__
from deployer.sandbox import Fleet
from tests.integration.helpers import REPO

DIST = f"shipfleet-{__version__}"
PLACEHOLDERS = {
    "web1": "web1.example.invalid",
    "web2": "web2.example.invalid",
}  # in the scaffold's inventory


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{args}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it (what `python -m build` does by default)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], timeout=600)
    return out


@pytest.fixture(scope="module")
def venv_bin(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, outside the checkout, with only the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    assert REPO not in venv.parents
    _run([sys.executable, "-m", "venv", str(venv)])
    (wheel,) = dist.glob("*.whl")
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        cwd=venv,
        timeout=600,
        env=_clean_env(),
    )
    return venv / "bin"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a shell that never saw this checkout or its virtualenv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "SSH_AUTH_SOCK")
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))
    )
    return {**env, "NO_COLOR": "1", **extra}


def test_wheel_carries_the_package_and_nothing_else(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = archive.read(f"{DIST}.dist-info/METADATA").decode()
        entry_points = archive.read(f"{DIST}.dist-info/entry_points.txt").decode()
    assert all(n.startswith(("deployer/", f"{DIST}.dist-info/")) for n in names), [
        n for n in names if not n.startswith(("deployer/", f"{DIST}.dist-info/"))
    ]
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    tracked = _run(["git", "ls-files", "deployer"], cwd=REPO).stdout.split()
    missing = [path for path in tracked if path not in names]
    assert missing == [], "tracked package files missing from the wheel"
    for data in (
        "deployer/py.typed",
        "deployer/scaffold/files/playbooks/deploy.yml",
        f"{DIST}.dist-info/licenses/LICENSE",
    ):
        assert data in names

    assert "Name: shipfleet\n" in meta
    assert f"Version: {__version__}\n" in meta
    assert "License-Expression: MIT\n" in meta
    assert "Project-URL: Source, " in meta and "Project-URL: Changelog, " in meta
    assert "Keywords: " in meta
    # The Python version this suite runs on is one the metadata claims.
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"Classifier: Programming Language :: Python :: {python}\n" in meta
    assert "shipfleet = deployer.cli:main" in entry_points


def test_sdist_carries_the_changelog_and_no_tests(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for path in ("CHANGELOG.md", "LICENSE", "README.md", "pyproject.toml", "deployer/cli.py"):
        assert f"{DIST}/{path}" in names
    assert not any(n.startswith((f"{DIST}/tests/", f"{DIST}/benchmarks/")) for n in names)


def test_installed_wheel_inits_and_deploys_a_new_project(
    venv_bin: Path, clean_fleet: Fleet, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    project = tmp_path / "hello"
    project.mkdir()
    env = _clean_env(HOME=str(home))
    shipfleet = str(venv_bin / "shipfleet")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _run([shipfleet, *args], cwd=project, env=env, timeout=300)

    # The installed program is the wheel's, not this checkout's.
    where = _run(
        [str(venv_bin / "python"), "-c", "import deployer; print(deployer.__file__)"],
        cwd=project,
        env=env,
    ).stdout
    assert Path(where.strip()).is_relative_to(venv_bin.parent), where

    assert run("--version").stdout == f"shipfleet {__version__}\n"
    listed = run("--list").stdout
    for name in ("deploy", "init", "rollback", "status", "preflight"):
        assert f"  {name} " in listed, listed

    out = run("init").stdout
    for path in (
        "inventories/staging.yml",
        "playbooks/deploy.yml",
        "templates/app.env.j2",
        "tasks.py",
        ".github/workflows/deploy.yml",
    ):
        assert f"wrote {path}" in out
        assert (project / path).is_file()
    assert "added to .gitignore: .deploy-runs/" in out
    assert "shipfleet deploy --env staging --dry-run" in out

    # The only edit: the inventory's addresses. Port, key and known_hosts: ~/.ssh/config.
    inventory = project / "inventories" / "staging.yml"
    text = inventory.read_text()
    for name, placeholder in PLACEHOLDERS.items():
        assert text.count(placeholder) == 1
        text = text.replace(placeholder, clean_fleet.host(name).address)
    inventory.write_text(text)
    addresses = [clean_fleet.host(name).address for name in PLACEHOLDERS]
    config = home / ".ssh" / "config"
    config.write_text(
        f"Host {' '.join(addresses)}\n"
        f"    Port {clean_fleet.host('web1').port}\n"
        f"    IdentityFile {clean_fleet.key_path}\n"
        f"    UserKnownHostsFile {clean_fleet.known_hosts_path}\n"
    )
    config.chmod(0o600)

    dry = run("deploy", "--env", "staging", "--dry-run").stdout
    assert "DRY RUN" in dry and "/srv/hello" in dry
    for name in PLACEHOLDERS:
        assert clean_fleet.exec(name, "test -e /srv/hello")[0] != 0  # the dry run changed nothing

    run("deploy", "--env", "staging")
    releases = set()
    for name in PLACEHOLDERS:
        code, link = clean_fleet.exec(name, "readlink /srv/hello/current")
        assert code == 0, link
        release = link.strip().rsplit("/", 1)[-1]
        assert link.strip() == f"/srv/hello/releases/{release}"
        releases.add(release)
        code, page = clean_fleet.exec(name, "cat /srv/hello/current/index.html")
        assert page == (project / "app" / "index.html").read_text()
        code, rendered = clean_fleet.exec(name, "cat /srv/hello/current/config/app.env")
        assert f"APP_HOST={name}\n" in rendered
        assert f"APP_RELEASE={release}\n" in rendered
        assert "APP_ENV=staging\n" in rendered
        code, history = clean_fleet.exec(name, "cat /srv/hello/.deploy/history.jsonl")
        assert code == 0 and release in history
    assert len(releases) == 1
    assert clean_fleet.exec("web3", "test -e /srv/hello")[0] != 0  # not in the inventory
    assert list((project / ".deploy-runs").glob("*.json"))

    # The tasks.py init wrote keeps `invoke` working, through the same installed package.
    invoked = _run([str(venv_bin / "invoke"), "--list"], cwd=project, env=env).stdout
    assert "deploy" in invoked and "init" in invoked

    # The sandbox is an optional extra: without it, a clear way to get it, not a traceback.
    sandbox = subprocess.run(
        [shipfleet, "sandbox.up", "--env", "staging"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sandbox.returncode == 2, sandbox.stdout + sandbox.stderr
    assert "pip install 'shipfleet[sandbox]'" in sandbox.stderr
    assert "Traceback" not in sandbox.stderr
