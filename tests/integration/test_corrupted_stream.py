"""A release archive damaged between the build and the hosts (fault 6, through a real deploy):
a local `before_stage` hook flips one byte of, or cuts the end off, the very archive file the
deployer is about to stream (SSH's MAC rules out damage on the wire
itself). Every host must refuse it before anything is renamed in, and stay
on its complete previous release, unlocked, with no staging debris."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, Project, make_project
from tests.integration.test_faults import assert_fleet_sound

# Every archive the run built: the release, and the delta a redeploy sends instead.
FLIP = (
    'python3 -c "import glob,os\n'
    "for p in glob.glob(os.environ['TMPDIR']+'/deployer-build-*/*.tar.gz'):\n"
    "    f=open(p,'r+b'); f.seek(os.path.getsize(p)//2); b=f.read(1); f.seek(-1,1);"
    ' f.write(bytes([b[0]^0xFF])); f.close()"'
)
CUT = 'for p in "$TMPDIR"/deployer-build-*/*.tar.gz; do truncate -s -4096 "$p"; done'


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


@pytest.mark.parametrize("damage", [FLIP, CUT], ids=["flipped-byte", "truncated"])
def test_fault06_damaged_archive_stream_is_refused_on_every_host(
    project: Project, tmp_path: Path, damage: str
) -> None:
    # A first deploy: the whole archive travels (a redeploy's delta is built after this hook).
    project.playbook(hooks={"before_stage": [{"local": damage}]})
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = project.invoke("deploy", "--env", "test", env={"TMPDIR": str(tmp)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "checksum mismatch for the uploaded release archive" in out.stderr
    for host in HOSTS:
        assert f"{host}" in out.stderr
        assert project.current(host) is None
        assert project.releases(host) == []  # nothing renamed in
    assert_fleet_sound(project)
    # The same release, undamaged, deploys at once: nothing was left in the way.
    project.playbook(hooks={})
    again = project.invoke("deploy", "--env", "test")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_fleet_sound(project)
