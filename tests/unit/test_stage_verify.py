"""What the stage step verifies (issue 18: verification without re-reading what the archive's
sha256 already proved). Each test runs the real stage script in a local bash (no Docker) on
a real tree: a whole archive's files are proven by its sha256 and checked by name and type; a
delta's linked files are hashed unless the base release's record vouches for the very inode,
size, mtime and MANIFEST sha256."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.delta import Delta, build_delta, parse_baseline
from deployer.release import Release, build_release
from deployer.remote import scripts
from deployer.remote.scripts.stage import record_path, verify_tree
from deployer.remote.shell import Script

Staged = tuple[scripts.Layout, Path, Release]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GNU tools")


def run(script: Script) -> subprocess.CompletedProcess[bytes]:
    stdin = b"".join(s if isinstance(s, bytes) else s.read_bytes() for s in script.stdin.segments)
    return subprocess.run(
        ["bash", "-c", script.render()], input=stdin, capture_output=True, timeout=60
    )


def source(root: Path) -> Path:
    app = root / "src"
    (app / "vendor").mkdir(parents=True)
    (app / "app.py").write_text("print('v1')\n")
    (app / "name with  spaces.txt").write_text("odd\n")
    for n in range(30):
        (app / "vendor" / f"mod{n:02d}.py").write_text(f"N = {n}\n" + "#\n" * 300)
    return app


def build(app: Path, work: Path, second: int = 0) -> Release:
    return build_release(
        source_dir=app, work_dir=work, now=datetime(2026, 12, 3, 12, 0, second, tzinfo=UTC)
    )


def stage(
    layout: scripts.Layout, release: Release, delta: Delta | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The real stage script, the whole archive or `delta` on its stdin."""
    sent = delta or release
    return run(
        scripts.stage(
            layout,
            release.id,
            "run1",
            archive=sent.archive,
            archive_size=sent.archive_size,
            archive_sha256=sent.archive_sha256,
            host_files=b"",
            shared_dirs=[],
            shared_files=[],
            base=delta.base if delta else None,
            link_list=delta.link_list if delta else b"",
        )
    )


@pytest.fixture
def staged(tmp_path: Path) -> Staged:
    layout = scripts.Layout(str(tmp_path / "app"))
    Path(layout.staging).mkdir(parents=True)
    Path(layout.releases).mkdir()
    app = source(tmp_path)
    first = build(app, tmp_path / "b1")
    done = stage(layout, first)
    assert done.returncode == 0, done.stderr
    return layout, app, first


def redeploy(
    tmp_path: Path, layout: scripts.Layout, app: Path, base: Release
) -> tuple[Release, subprocess.CompletedProcess[bytes]]:
    """A one-file change staged as a delta against `base` on this 'host'."""
    (app / "app.py").write_text("print('v2')\n")
    second = build(app, tmp_path / "b2", second=1)
    base_dir = Path(layout.release(base.id))
    baseline = parse_baseline(
        base.id,
        "digest",
        (base_dir / "MANIFEST").read_text().splitlines(),
        [
            f"{oct(p.stat().st_mode)[-3:]} {p.relative_to(base_dir)}"
            for p in base_dir.rglob("*")
            if p.is_file()
        ],
    )
    assert baseline is not None
    delta = build_delta(second, baseline, tmp_path / "b2")
    done = stage(layout, second, delta)
    return second, done


def edit_in_place(path: Path, data: bytes, *, keep_mtime: bool, append: bool = False) -> None:
    st = path.stat()
    path.chmod(0o644)
    with open(path, "ab" if append else "r+b") as f:  # the same inode
        f.write(data)
    path.chmod(st.st_mode & 0o777)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_whole_archive_is_staged_with_a_record_of_every_file(staged: Staged) -> None:
    layout, _, first = staged
    release = Path(layout.release(first.id))
    lines = Path(record_path(layout, first.id)).read_text().splitlines()
    assert len(lines) == len(first.files)
    for line in lines:
        sha, ino, size, mtime, path = line.split(" ", 4)
        st = (release / path).stat()
        assert (sha, int(ino), int(size)) == (first.files[path].sha256, st.st_ino, st.st_size)
        assert float(mtime) == st.st_mtime == first.mtime
    assert "name with  spaces.txt" in {line.split(" ", 4)[4] for line in lines}


def test_a_one_file_delta_hashes_only_what_the_base_record_does_not_vouch_for(
    tmp_path: Path, staged: Staged
) -> None:
    layout, app, first = staged
    second, done = redeploy(tmp_path, layout, app, first)
    assert done.returncode == 0, done.stderr
    # The todo list is removed with staging; what it held is what the record shows as new.
    old = set(Path(record_path(layout, first.id)).read_text().splitlines())
    new = Path(record_path(layout, second.id)).read_text().splitlines()
    assert sorted(line.split(" ", 4)[4] for line in new if line not in old) == [
        "REVISION",
        "app.py",
    ]
    assert (Path(layout.release(second.id)) / "app.py").read_text() == "print('v2')\n"
    linked = Path(layout.release(second.id)) / "vendor" / "mod07.py"
    assert (
        linked.stat().st_ino == (Path(layout.release(first.id)) / "vendor/mod07.py").stat().st_ino
    )
    done = subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST"], cwd=layout.release(second.id))
    assert done.returncode == 0


@pytest.mark.parametrize("keep_size", [False, True], ids=["grown", "same-size"])
def test_a_linked_file_edited_in_place_is_hashed_and_refused(
    tmp_path: Path, staged: Staged, keep_size: bool
) -> None:
    layout, app, first = staged
    target = Path(layout.release(first.id)) / "vendor" / "mod07.py"
    size = target.stat().st_size
    if keep_size:  # `dd conv=notrunc`: only the mtime tells
        edit_in_place(target, b"X" * size, keep_mtime=False)
    else:
        edit_in_place(target, b"import os  # planted\n", keep_mtime=False, append=True)
    assert (target.stat().st_size == size) == keep_size
    _, done = redeploy(tmp_path, layout, app, first)
    assert done.returncode == scripts.EXIT_VERIFY, done.stderr
    assert b"vendor/mod07.py: FAILED" in done.stderr
    assert [p.name for p in Path(layout.releases).iterdir()] == [first.id]


def test_without_a_base_record_every_linked_file_is_hashed(tmp_path: Path, staged: Staged) -> None:
    """A base staged before records existed (or whose record is gone) is trusted in nothing."""
    layout, app, first = staged
    Path(record_path(layout, first.id)).unlink()
    target = Path(layout.release(first.id)) / "vendor" / "mod07.py"
    edit_in_place(target, b"X" * target.stat().st_size, keep_mtime=True)
    _, done = redeploy(tmp_path, layout, app, first)
    assert done.returncode == scripts.EXIT_VERIFY, done.stderr
    assert b"vendor/mod07.py: FAILED" in done.stderr


def test_an_edit_keeping_inode_size_and_mtime_is_carried_forward_the_documented_limit(
    tmp_path: Path, staged: Staged
) -> None:
    """docs/reliability.md: a linked file rewritten in place with the same size and its mtime
    set back to the nanosecond is trusted on the base's record (rsync's rule, plus inode and
    sha256). This pins the limit: if it ever is closed, update the docs."""
    layout, app, first = staged
    target = Path(layout.release(first.id)) / "vendor" / "mod07.py"
    edit_in_place(target, b"X" * target.stat().st_size, keep_mtime=True)
    second, done = redeploy(tmp_path, layout, app, first)
    assert done.returncode == 0, done.stderr
    assert (Path(layout.release(second.id)) / "vendor" / "mod07.py").read_bytes().startswith(b"XXX")


def test_a_record_vouches_only_for_the_sha256_it_was_verified_against(
    tmp_path: Path, staged: Staged
) -> None:
    """A forged baseline (issue 14) claims a linked file holds what the new MANIFEST wants: the
    base's record names the sha256 the inode really held, so the file is hashed, and refused."""
    layout, app, first = staged
    record = Path(record_path(layout, first.id))
    lines = record.read_text().splitlines()
    # Pretend the base's app.py was verified against the *new* sha256: it was not; the file
    # itself still holds v1. A delta that links app.py (as a forged baseline would ask) ...
    (app / "app.py").write_text("print('v2')\n")
    second = build(app, tmp_path / "b2", second=1)
    base_dir = Path(layout.release(first.id))
    forged = [
        f"{second.files[p].sha256 if p == 'app.py' else e.sha256}  {p}"
        for p, e in sorted(first.files.items())
    ]
    modes = [f"644 {p}" for p in first.files]
    baseline = parse_baseline(first.id, "digest", forged, modes)
    assert baseline is not None
    delta = build_delta(second, baseline, tmp_path / "b2")
    assert "app.py" not in delta.changed
    assert gzip.decompress(delta.link_list).split(b"\0").count(b"app.py") == 1
    done = stage(layout, second, delta)
    # ... is refused: the record says app.py held v1's sha256, so it was hashed.
    assert done.returncode == scripts.EXIT_VERIFY, done.stderr
    assert b"app.py: FAILED" in done.stderr
    assert record.read_text().splitlines() == lines
    assert (base_dir / "app.py").read_text() == "print('v1')\n"


@pytest.mark.parametrize("damage", ["extra", "missing", "symlink"])
def test_the_tree_must_hold_exactly_the_manifest_s_regular_files(
    tmp_path: Path, damage: str
) -> None:
    """Whatever tar did, a tree with a file too many, one too few, or a listed path that is
    not a regular file is refused, in both modes."""
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "a").write_text("a\n")
    (tree / "d" / "b c").write_text("b\n")
    sums = subprocess.run(
        ["sha256sum", "a", "d/b c"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout
    (tree / "MANIFEST").write_text(sums)
    if damage == "extra":
        (tree / "d" / "sitecustomize.py").write_text("x = 1\n")
    elif damage == "missing":
        (tree / "d" / "b c").unlink()
    else:
        (tree / "d" / "b c").unlink()
        (tree / "d" / "b c").symlink_to("../a")
    for base in (None, str(tmp_path / "none")):
        lines = verify_tree(
            str(tree), "t", record=str(tmp_path / "rec"), base_record=base,
            records=str(tmp_path),
        )  # fmt: skip
        done = subprocess.run(["bash", "-c", "set -eu\n" + "\n".join(lines)], capture_output=True)
        assert done.returncode == scripts.EXIT_VERIFY, (base, done.stderr)
        assert b"does not match the MANIFEST" in done.stderr


def test_a_symlinked_record_directory_is_neither_trusted_nor_written(
    tmp_path: Path, staged: Staged
) -> None:
    """Records live in `.deploy/verified`; one that is a symlink (set up by someone else) is
    read as no record at all, so every linked file is hashed, and nothing is written there."""
    layout, app, first = staged
    records = Path(layout.state) / "verified"
    elsewhere = tmp_path / "elsewhere"
    records.rename(elsewhere)
    records.symlink_to(elsewhere)
    target = Path(layout.release(first.id)) / "vendor" / "mod07.py"
    edit_in_place(target, b"X" * target.stat().st_size, keep_mtime=True)
    _, done = redeploy(tmp_path, layout, app, first)
    assert done.returncode == scripts.EXIT_VERIFY, done.stderr
    assert b"vendor/mod07.py: FAILED" in done.stderr
    assert [p.name for p in elsewhere.iterdir()] == [first.id]
