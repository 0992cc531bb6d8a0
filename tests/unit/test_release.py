"""Release artifacts: ids, REVISION/MANIFEST, archive layout, and every rejected source path."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO

import pytest

from deployer.errors import ReleaseError
from deployer.release import (
    RELEASE_ID_RE,
    Entry,
    Release,
    TarTree,
    build_release,
    pack,
    validate_release_id,
)

NOW = datetime(2024, 1, 31, 12, 0, 5, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


GIT_IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.invalid")


def git(repo: Path, *args: str) -> str:
    cmd = ["git", *GIT_IDENTITY, "-c", "commit.gpgsign=false", "-C", str(repo), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def make_tree(root: Path) -> Path:
    (root / "app" / "static").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / "app" / "static" / "site.css").write_text("body {}\n")
    run = root / "bin" / "run"
    run.parent.mkdir()
    run.write_text("#!/bin/sh\necho run\n")
    run.chmod(0o777)  # group/other write must be stripped
    (root / "empty").mkdir()
    (root / "link.css").symlink_to("app/static/site.css")
    (root / "app" / "up").symlink_to("../bin")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "app" / "__pycache__").mkdir()
    (root / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (root / "app" / "stale.pyc").write_bytes(b"\0")
    return root


def extract(archive: Path, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
    return dest


def sha256sum_check(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "-c", "--quiet", "MANIFEST"], cwd=tree, capture_output=True, text=True
    )


# ------------------------------------------------------------------ directory source


def test_dir_source_archive_unpacks_and_verifies_with_sha256sum(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, work_dir=tmp_path / "work", now=NOW)

    tree = extract(rel.archive, tmp_path / "out")
    check = sha256sum_check(tree)
    assert check.returncode == 0, check.stdout + check.stderr
    (tree / "app" / "main.py").write_text("tampered\n")
    assert sha256sum_check(tree).returncode != 0

    assert (tree / "empty").is_dir()
    assert os.readlink(tree / "link.css") == "app/static/site.css"
    assert os.readlink(tree / "app" / "up") == "../bin"
    assert not (tree / ".git").exists()
    assert not (tree / "app" / "__pycache__").exists()
    assert not (tree / "app" / "stale.pyc").exists()


def test_bytecode_is_kept_only_when_the_source_asks(tmp_path: Path) -> None:
    """Vendored dependencies compiled for the hosts: without their bytecode every process
    started from the release compiles them again (and cannot write it back)."""
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, work_dir=tmp_path / "work", now=NOW, keep_bytecode=True)
    assert {"app/__pycache__/main.cpython-311.pyc", "app/stale.pyc"} <= set(rel.files)
    tree = extract(rel.archive, tmp_path / "out")
    assert (tree / "app" / "__pycache__" / "main.cpython-311.pyc").read_bytes() == b"\0"
    assert sha256sum_check(tree).returncode == 0
    assert not (tree / ".git").exists()  # never packed, whatever the setting
    default = build_release(source_dir=src, work_dir=tmp_path / "w2", now=NOW)
    assert not any(path.endswith(".pyc") for path in default.files)
    assert default.id != rel.id  # a different tree, a different release


def test_dir_source_revision_manifest_and_id(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, work_dir=tmp_path / "work", now=NOW)

    assert rel.commit is None
    assert rel.id.startswith("20240131T120005Z-")
    assert RELEASE_ID_RE.fullmatch(rel.id)
    assert rel.source.startswith("dir:") and len(rel.source) == 4 + 64
    assert rel.id.endswith("-" + rel.source[4:11])
    assert rel.built_at == NOW.replace(microsecond=0)

    with tarfile.open(rel.archive) as tar:
        revision = tar.extractfile("REVISION").read().decode()  # type: ignore[union-attr]
        manifest = tar.extractfile("MANIFEST").read().decode()  # type: ignore[union-attr]
    assert revision == f"{rel.id}\n{rel.source}\n"
    assert revision.splitlines()[0] == rel.id
    assert manifest == rel.manifest_text()
    listed = [line.split("  ", 1)[1] for line in manifest.splitlines()]
    assert listed == sorted(listed)
    assert "REVISION" in listed and "MANIFEST" not in listed
    assert "link.css" not in listed  # symlinks are not files
    assert set(listed) == set(rel.files)
    main = (src / "app" / "main.py").read_bytes()
    assert rel.files["app/main.py"].sha256 == hashlib.sha256(main).hexdigest()
    assert rel.files["app/main.py"].size == len(main)


def test_archive_layout_is_sorted_relative_root_owned_and_dated(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, work_dir=tmp_path / "work", now=NOW)

    data = rel.archive.read_bytes()
    assert rel.archive == tmp_path / "work" / "release.tar.gz"
    assert rel.archive_sha256 == hashlib.sha256(data).hexdigest()
    assert rel.archive_size == len(data)
    with tarfile.open(rel.archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[-2:] == ["REVISION", "MANIFEST"]
    assert names[:-2] == sorted(names[:-2])
    assert "empty" in names and "app" in names
    for m in members:
        assert not m.name.startswith(("/", "./")), m.name
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == int(NOW.timestamp())
        assert m.mode & 0o022 == 0 or m.issym(), (m.name, oct(m.mode))
    by_name = {m.name: m for m in members}
    assert by_name["bin/run"].mode == 0o755
    assert by_name["link.css"].issym()


def test_same_content_same_time_gives_identical_archive(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    a = build_release(source_dir=src, work_dir=tmp_path / "w1", now=NOW)
    b = build_release(source_dir=src, work_dir=tmp_path / "w2", now=NOW)
    assert (a.id, a.archive_sha256) == (b.id, b.archive_sha256)
    (src / "app" / "main.py").write_text("print('changed')\n")
    c = build_release(source_dir=src, work_dir=tmp_path / "w3", now=NOW)
    assert c.id != a.id and c.source != a.source


def test_release_ids_sort_by_build_time(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    times = [
        datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))).astimezone(UTC),
        datetime(2024, 10, 2, 9, 3, 1, tzinfo=UTC),
    ]
    ids = [
        build_release(source_dir=src, work_dir=tmp_path / f"w{i}", now=t).id
        for i, t in enumerate(times)
    ]
    assert ids == sorted(ids)


def test_release_time_is_utc_whatever_the_zone(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    paris = datetime(2024, 6, 1, 16, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    rel = build_release(source_dir=src, work_dir=tmp_path / "w", now=paris)
    assert rel.id.startswith("20240601T140000Z-")
    with pytest.raises(ReleaseError, match="timezone-aware"):
        build_release(source_dir=src, work_dir=tmp_path / "w", now=datetime(2024, 6, 1))


@pytest.mark.parametrize("value", ["20240131T120005Z-abcdef0", "19991231T235959Z-0000000"])
def test_validate_release_id_accepts(value: str) -> None:
    assert validate_release_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "20240131T120005Z-abcdef",
        "20240131T120005Z-ABCDEF0",
        "20240131T120005-abcdef0",
        "20240131T120005Z-abcdef0\n",
        "../20240131T120005Z-abcdef0",
        "current",
        "20240131T120005Z-abcdef0; rm -rf /",
    ],
)
def test_validate_release_id_rejects(value: str) -> None:
    with pytest.raises(ReleaseError, match="not a release id"):
        validate_release_id(value)


def test_dir_subdir_strips_the_prefix(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, subdir="app/static", work_dir=tmp_path / "w", now=NOW)
    assert set(rel.files) == {"site.css", "REVISION"}
    with pytest.raises(ReleaseError, match="subdir"):
        build_release(source_dir=src, subdir="../src", work_dir=tmp_path / "w", now=NOW)
    with pytest.raises(ReleaseError, match="not a directory"):
        build_release(source_dir=src, subdir="missing", work_dir=tmp_path / "w", now=NOW)


def test_hardlinks_are_packed_as_regular_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("same\n")
    os.link(src / "a.txt", src / "b.txt")
    rel = build_release(source_dir=src, work_dir=tmp_path / "w", now=NOW)
    with tarfile.open(rel.archive) as tar:
        assert tar.getmember("a.txt").isreg() and tar.getmember("b.txt").isreg()
    assert rel.files["a.txt"] == rel.files["b.txt"]


def test_work_dir_inside_the_source_is_not_packed(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    first = build_release(source_dir=src, work_dir=src / ".deploy", now=NOW)
    second = build_release(source_dir=src, work_dir=src / ".deploy", now=NOW)
    assert not any(p.startswith(".deploy") for p in second.files)
    assert first.id == second.id


def delta_paths(rel: Release, changed: list[str]) -> list[str]:
    assert rel.tree is not None
    return [e.path for e in rel.tree.entries() if e.kind != "file"] + changed


def test_pack_subset_for_delta_uploads(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, work_dir=tmp_path / "w", now=NOW)
    assert rel.tree is not None
    out = tmp_path / "delta.tar.gz"
    paths = delta_paths(rel, ["app/main.py"])
    result = pack(rel.tree, paths, out, mtime=rel.mtime, extra=rel.generated_files())
    assert set(result.files) == {"app/main.py", "REVISION", "MANIFEST"}
    assert result.files["app/main.py"] == rel.files["app/main.py"]
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    with tarfile.open(out) as tar:
        assert "app/static/site.css" not in tar.getnames()
        assert tar.extractfile("MANIFEST").read().decode() == rel.manifest_text()  # type: ignore[union-attr]


# ------------------------------------------------------------------------ git source


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "web").mkdir()
    (repo / "web" / "app.py").write_text("VERSION = 1\n")
    (repo / "web" / "run.sh").write_text("#!/bin/sh\n")
    (repo / "web" / "run.sh").chmod(0o755)
    (repo / "web" / "current.py").symlink_to("app.py")
    (repo / "README").write_text("readme\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_git_source_uses_the_commit(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "web" / "app.py").write_text("VERSION = 2\n")
    git(repo, "commit", "-q", "-am", "second")
    (repo / "web" / "app.py").write_text("uncommitted\n")
    (repo / "debug.log").write_text("ignored\n")

    rel = build_release(git_repo=repo, ref=first[:10], work_dir=tmp_path / "w", now=NOW)
    assert rel.commit == first
    assert rel.id == f"20240131T120005Z-{first[:7]}"
    assert rel.source == first
    tree = extract(rel.archive, tmp_path / "out")
    assert (tree / "REVISION").read_text() == f"{rel.id}\n{first}\n"
    assert (tree / "web" / "app.py").read_text() == "VERSION = 1\n"
    assert os.readlink(tree / "web" / "current.py") == "app.py"
    assert os.stat(tree / "web" / "run.sh").st_mode & 0o777 == 0o755
    assert not (tree / "debug.log").exists()
    check = sha256sum_check(tree)
    assert check.returncode == 0, check.stdout + check.stderr

    head = build_release(git_repo=repo, ref="main", work_dir=tmp_path / "w", now=NOW)
    assert head.commit == git(repo, "rev-parse", "HEAD") != first
    assert build_release(git_repo=repo, work_dir=tmp_path / "w2", now=NOW).commit == head.commit


def test_git_subdir_strips_the_prefix(repo: Path, tmp_path: Path) -> None:
    rel = build_release(git_repo=repo, ref="main", subdir="web", work_dir=tmp_path / "w", now=NOW)
    assert set(rel.files) == {"app.py", "run.sh", "REVISION"}
    assert rel.tree is not None
    links = {e.path: e.target for e in rel.tree.entries() if e.kind == "symlink"}
    assert links == {"current.py": "app.py"}


def test_git_and_dir_sources_pack_the_same_sorted_members(repo: Path, tmp_path: Path) -> None:
    for name in ("a-b", "a.txt", "a/x", "a/y/z", "B", "é"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "names")
    from_git = build_release(git_repo=repo, work_dir=tmp_path / "g", now=NOW)
    from_dir = build_release(source_dir=repo, work_dir=tmp_path / "d", now=NOW)
    with tarfile.open(from_git.archive) as a, tarfile.open(from_dir.archive) as b:
        names_git = [m.name + ("/" if m.isdir() else "") for m in a.getmembers()]
        names_dir = [m.name + ("/" if m.isdir() else "") for m in b.getmembers()]
    assert names_git == names_dir
    assert names_git[:-2] == sorted(names_git[:-2], key=lambda n: n.encode())
    assert dict(from_git.files) == {**from_dir.files, "REVISION": from_git.files["REVISION"]}


def test_git_delta_pack_streams_only_the_changed_files(repo: Path, tmp_path: Path) -> None:
    rel = build_release(git_repo=repo, work_dir=tmp_path / "w", now=NOW)
    assert rel.tree is not None
    out = tmp_path / "delta.tar.gz"
    result = pack(rel.tree, delta_paths(rel, ["README"]), out, mtime=rel.mtime)
    assert result.files == {"README": rel.files["README"]}
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["README", "web", "web/current.py"]


@pytest.mark.parametrize(
    "ref",
    [
        "main;touch {pwned}",
        "$(touch {pwned})",
        "--output={pwned}",
        "-h",
        "main..HEAD",
        "HEAD:README",
        "main branch",
        "main\ntouch {pwned}",
        "`touch {pwned}`",
        "",
    ],
)
def test_git_ref_injection_is_refused(repo: Path, tmp_path: Path, ref: str) -> None:
    pwned = tmp_path / "pwned"
    with pytest.raises(ReleaseError, match="refusing git ref"):
        build_release(git_repo=repo, ref=ref.format(pwned=pwned), work_dir=tmp_path / "w", now=NOW)
    assert not pwned.exists()
    assert not (tmp_path / "w" / "release.tar.gz").exists()


def test_unknown_git_ref_is_an_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="'nope' is not a commit"):
        build_release(git_repo=repo, ref="nope", work_dir=tmp_path / "w", now=NOW)


def test_git_absolute_symlink_is_rejected_naming_it(repo: Path, tmp_path: Path) -> None:
    (repo / "web" / "passwd").symlink_to("/etc/passwd")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bad link")
    with pytest.raises(ReleaseError, match=r"'web/passwd' is a symlink to an absolute path"):
        build_release(git_repo=repo, work_dir=tmp_path / "w", now=NOW)
    assert not (tmp_path / "w" / "release.tar.gz").exists()


def test_git_symlink_escaping_is_rejected_naming_it(repo: Path, tmp_path: Path) -> None:
    (repo / "web" / "out").symlink_to("../../outside")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "escaping link")
    with pytest.raises(ReleaseError, match=r"'web/out' is a symlink that points outside"):
        build_release(git_repo=repo, work_dir=tmp_path / "w", now=NOW)


def test_git_tree_with_dotdot_entry_is_rejected(repo: Path, tmp_path: Path) -> None:
    blob = git(repo, "hash-object", "-w", "README")
    tree = subprocess.run(
        ["git", "-C", str(repo), "mktree"],
        input=f"100644 blob {blob}\t..\n",
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    commit = git(repo, "commit-tree", tree, "-m", "crafted")
    with pytest.raises(ReleaseError, match=r"\.\."):
        build_release(git_repo=repo, ref=commit, work_dir=tmp_path / "w", now=NOW)


# ---------------------------------------------------------------- rejected sources


def _assert_rejected(src: Path, tmp_path: Path, path: str, why: str) -> None:
    work = tmp_path / "work"
    with pytest.raises(ReleaseError) as err:
        build_release(source_dir=src, work_dir=work, now=NOW)
    assert repr(path) in str(err.value)
    assert why in str(err.value)
    assert not list(work.glob("release.tar.gz*")), "nothing may be packed before the check"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "src")


def test_symlink_dotdot_escape_is_rejected(src: Path, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("secret\n")
    (src / "app" / "x").symlink_to("../../x")
    _assert_rejected(src, tmp_path, "app/x", "points outside the release")


def test_symlink_escaping_back_through_the_root_name_is_rejected(src: Path, tmp_path: Path) -> None:
    # Resolves inside locally, but only through the source directory's own name.
    (src / "self").symlink_to("../src/app/main.py")
    _assert_rejected(src, tmp_path, "self", "points outside the release")


def test_symlink_escaping_through_another_symlink_is_rejected(src: Path, tmp_path: Path) -> None:
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "d").symlink_to("../../app")  # fine on its own
    (src / "sneaky").symlink_to("a/b/d/../../..")  # lexically '.', really the parent of src
    _assert_rejected(src, tmp_path, "sneaky", "points outside the release")


def test_absolute_symlink_is_rejected(src: Path, tmp_path: Path) -> None:
    (src / "app" / "passwd").symlink_to("/etc/passwd")
    _assert_rejected(src, tmp_path, "app/passwd", "absolute path")


def test_fifo_is_rejected(src: Path, tmp_path: Path) -> None:
    os.mkfifo(src / "app" / "pipe")
    _assert_rejected(src, tmp_path, "app/pipe", "is a fifo")


def test_socket_is_rejected(src: Path, tmp_path: Path) -> None:
    import socket

    short = Path(f"/tmp/rel-sock-{os.getpid()}")
    short.mkdir()
    try:
        make_tree(short / "s")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(short / "s" / "sock"))
            _assert_rejected(short / "s", tmp_path, "sock", "is a socket")
    finally:
        subprocess.run(["rm", "-rf", str(short)], check=True)


@pytest.mark.parametrize("name", ["new\nline.txt", "back\\slash.txt", "cr\r"])
def test_unlistable_names_are_rejected(src: Path, tmp_path: Path, name: str) -> None:
    (src / name).write_text("x\n")
    _assert_rejected(src, tmp_path, name, "newline, carriage return or backslash")


@pytest.mark.parametrize("name", ["REVISION", "MANIFEST"])
def test_generated_names_in_the_source_are_rejected(src: Path, tmp_path: Path, name: str) -> None:
    (src / name).write_text("x\n")
    _assert_rejected(src, tmp_path, name, "generated by the deployer")


def tar_tree(*members: tuple[str, bytes, bytes | str]) -> TarTree:
    """A TarTree over a crafted archive of (name, type, data or link target) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, type_, payload in members:
            info = tarfile.TarInfo(name)
            info.type = type_
            if type_ == tarfile.REGTYPE:
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload if isinstance(payload, str) else ""
                tar.addfile(info)
    return TarTree(lambda: contextlib.nullcontext(io.BytesIO(buf.getvalue())))


@pytest.mark.parametrize(
    ("name", "type_", "why"),
    [
        ("../x", tarfile.REGTYPE, "escapes the release root"),
        ("a/../../x", tarfile.REGTYPE, "escapes the release root"),
        ("/etc/cron.d/x", tarfile.REGTYPE, "absolute path"),
        ("dev/null", tarfile.CHRTYPE, "special file"),
        ("dev/sda", tarfile.BLKTYPE, "special file"),
        ("run/fifo", tarfile.FIFOTYPE, "special file"),
    ],
)
def test_crafted_archive_members_are_rejected(name: str, type_: bytes, why: str) -> None:
    tree = tar_tree(("ok.txt", tarfile.REGTYPE, b"ok"), (name, type_, b"x"))
    with pytest.raises(ReleaseError, match=why) as err:
        tree.entries()
    assert repr(name) in str(err.value)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/etc/passwd", "absolute path"),
        ("../../x", "points outside"),
        ("d/../..", "points outside"),  # d -> sub: resolves to the parent of the root
        ("loop", "points outside"),  # a link to itself never resolves
    ],
)
def test_crafted_archive_symlinks_are_rejected(target: str, why: str) -> None:
    tree = tar_tree(
        ("sub/", tarfile.DIRTYPE, b""),
        ("d", tarfile.SYMTYPE, "sub"),
        ("loop", tarfile.SYMTYPE, target) if target == "loop" else ("bad", tarfile.SYMTYPE, target),
    )
    with pytest.raises(ReleaseError, match=why):
        tree.entries()


def test_crafted_duplicate_member_is_rejected() -> None:
    tree = tar_tree(("a", tarfile.REGTYPE, b"1"), ("a", tarfile.REGTYPE, b"2"))
    with pytest.raises(ReleaseError, match="'a' appears twice"):
        tree.entries()


def test_archive_hardlinks_become_regular_files(tmp_path: Path) -> None:
    tree = tar_tree(
        ("a.txt", tarfile.REGTYPE, b"shared content\n"),
        ("b.txt", tarfile.LNKTYPE, "a.txt"),
        ("c.txt", tarfile.REGTYPE, b"other\n"),
    )
    assert [e.kind for e in tree.entries()] == ["file", "file", "file"]
    out = tmp_path / "x.tar.gz"
    result = pack(tree, ["b.txt", "c.txt"], out, mtime=0)
    assert result.files["b.txt"].sha256 == hashlib.sha256(b"shared content\n").hexdigest()
    with tarfile.open(out) as tar:
        member = tar.getmember("b.txt")
        assert member.isreg() and tar.extractfile(member).read() == b"shared content\n"  # type: ignore[union-attr]
    with pytest.raises(ReleaseError, match="hardlink"):
        tar_tree(("b.txt", tarfile.LNKTYPE, "a.txt")).entries()


def test_release_manifest_text_for_hand_built_release(tmp_path: Path) -> None:
    from deployer.release import FileEntry

    rel = Release(
        id="20240131T120005Z-abcdef0",
        commit=None,
        archive=tmp_path / "a.tar.gz",
        archive_sha256="0" * 64,
        archive_size=0,
        files={"b": FileEntry("2" * 64, 1, 0o644), "a": FileEntry("1" * 64, 1, 0o644)},
    )
    assert rel.manifest_text() == f"{'1' * 64}  a\n{'2' * 64}  b\n"
    assert rel.mtime == int(datetime(2024, 1, 31, 12, 0, 5, tzinfo=UTC).timestamp())


def test_archive_hardlink_chains_resolve_to_the_first_file(tmp_path: Path) -> None:
    tree = tar_tree(
        ("a", tarfile.REGTYPE, b"data\n"),
        ("b", tarfile.LNKTYPE, "a"),
        ("c", tarfile.LNKTYPE, "b"),
    )
    result = pack(tree, ["c"], tmp_path / "x.tar.gz", mtime=0)
    assert result.files["c"].sha256 == hashlib.sha256(b"data\n").hexdigest()


class _ShrinkingTree:
    """A source whose file is shorter than it claimed when it was checked."""

    def entries(self) -> list[Entry]:
        return [Entry("grows.log", "file", 0o644, size=100)]

    def open(self, paths: Collection[str]) -> Iterator[tuple[Entry, IO[bytes] | None]]:
        yield self.entries()[0], io.BytesIO(b"only ten!!")


def test_file_shrinking_while_packed_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="'grows.log' changed while"):
        pack(_ShrinkingTree(), ["grows.log"], tmp_path / "x.tar.gz", mtime=0)
    assert not list(tmp_path.glob("x.tar.gz*"))


def test_unwritable_archive_is_a_release_error(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    rel = build_release(source_dir=src, work_dir=tmp_path / "w", now=NOW)
    assert rel.tree is not None
    with pytest.raises(ReleaseError, match="cannot write the release archive"):
        pack(rel.tree, ["app"], tmp_path / "missing" / "x.tar.gz", mtime=0)
