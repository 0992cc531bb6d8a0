"""Build one immutable release artifact per deploy, locally: a checked tree, REVISION, MANIFEST,
packed into a reproducible tar.gz. It never packs a path before every path of the source has
been checked, never runs git through a shell, and writes only the archive in `work_dir`.

A source is a `Tree`: a local directory, or a git commit read as a `git archive` stream (read
twice: once to check every member, once to pack; nothing is extracted to disk). Archive layout:
the tree's members sorted by tar name (a directory `a/` sorts like git does, after `a-b`),
then `REVISION` and `MANIFEST` last, because they depend on the hashes of everything before
them: every source file is read exactly once, hashed while it is packed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from deployer.errors import ReleaseError
from deployer.release._common import MANIFEST, REVISION
from deployer.release.archive import COMPRESSLEVEL as COMPRESSLEVEL  # still importable here
from deployer.release.archive import FileEntry, Packer, PackResult, _write_failed, pack
from deployer.release.trees import DirTree, Entry, GitTree, TarTree, Tree, _check_rel_path

__all__ = [
    "ARCHIVE_NAME",
    "MANIFEST",
    "RELEASE_ID_RE",
    "REVISION",
    "DirTree",
    "Entry",
    "FileEntry",
    "GitTree",
    "PackResult",
    "Packer",
    "Release",
    "TarTree",
    "Tree",
    "build_release",
    "pack",
    "validate_release_id",
]

RELEASE_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7}")
ARCHIVE_NAME = "release.tar.gz"

# Refs are passed to git as one argv element, but an allow-list still keeps out options
# (`-x`), revision ranges and `ref:path` lookups. Git itself rejects malformed ref names.
_REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,199}(?:[~^][0-9]{0,3})*")


def validate_release_id(value: str) -> str:
    """Return `value` if it is a release id (`YYYYMMDDTHHMMSSZ-abcdef0`), else raise."""
    if not isinstance(value, str) or not RELEASE_ID_RE.fullmatch(value):
        raise ReleaseError(
            f"not a release id: {value!r}", hint="release ids look like 20240131T120000Z-1a2b3c4"
        )
    return value


@dataclass(frozen=True)
class Release:
    id: str
    commit: str | None  # full commit sha for git sources
    archive: Path
    archive_sha256: str
    archive_size: int
    files: Mapping[str, FileEntry]  # every regular file, REVISION included, MANIFEST not
    tree: Tree | None = None  # the checked source, to pack subsets from (delta uploads)
    source: str = ""  # REVISION's second line: the commit or `dir:<digest>`
    committed: datetime | None = None  # the commit time of REVISION's commit (git sources)

    @property
    def built_at(self) -> datetime:
        """The release time, from the id (UTC, whole seconds); also every member's mtime."""
        return datetime.strptime(self.id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    @property
    def mtime(self) -> int:
        return int(self.built_at.timestamp())

    def revision_text(self) -> str:
        return _revision_text(self.id, self.source or self.commit or "")

    def manifest_text(self) -> str:
        """`sha256sum -c` input for every regular file, sorted by path."""
        return _manifest_text(self.files)

    def generated_files(self) -> tuple[tuple[str, bytes], ...]:
        """REVISION and MANIFEST as they are packed (pass as `extra` to `pack`)."""
        return (
            (REVISION, self.revision_text().encode()),
            (MANIFEST, self.manifest_text().encode()),
        )


def _revision_text(release_id: str, source: str) -> str:
    return f"{release_id}\n{source}\n"


def _manifest_text(files: Mapping[str, FileEntry]) -> str:
    return "".join(f"{files[p].sha256}  {p}\n" for p in sorted(files))


# ------------------------------------------------------------------------------ building


def commit_time(repo: Path, commit: str) -> datetime | None:
    """The committer time of a commit (for lead time: `deployer.delivery`); None if git
    cannot say."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "show", "-s", "--format=%ct", commit],
        capture_output=True,
        check=False,
    )
    try:
        return datetime.fromtimestamp(int(proc.stdout.decode().strip()), UTC)
    except ValueError:
        return None


def _check_subdir(subdir: str) -> str:
    sub = subdir.strip("/")
    if not sub or subdir.startswith("/") or any(p in ("", ".", "..") for p in sub.split("/")):
        raise ReleaseError(f"source subdir must be a relative path inside the source: {subdir!r}")
    return _check_rel_path(sub)


def _resolve_commit(repo: Path, ref: str) -> str:
    if not _REF_RE.fullmatch(ref) or ".." in ref:
        raise ReleaseError(
            f"refusing git ref {ref!r}",
            hint="use a branch, tag or commit name such as main, v1.2.0 or a commit sha",
        )
    cmd = ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options"]
    proc = subprocess.run([*cmd, f"{ref}^{{commit}}"], capture_output=True, check=False)
    commit = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        err = proc.stderr.decode(errors="replace").strip()
        raise ReleaseError(
            f"git ref {ref!r} is not a commit in {repo}" + (f": {err}" if err else "")
        )
    return commit


def _tree_digest(entries: Iterable[Entry], files: Mapping[str, FileEntry]) -> str:
    """Content digest of a source tree: its manifest plus modes, symlinks and directories."""
    sha = hashlib.sha256()
    for e in entries:
        if e.kind == "file":
            f = files[e.path]
            sha.update(f"{f.sha256}  {e.path}\t{f.mode:o}\n".encode())
        elif e.kind == "symlink":
            sha.update(f"l {e.path} -> {e.target}\n".encode())
        else:
            sha.update(f"d {e.path}\t{e.mode:o}\n".encode())
    return sha.hexdigest()


def _source_tree(
    source_dir: Path | None,
    git_repo: Path | None,
    ref: str | None,
    sub: str | None,
    work_dir: Path,
    keep_bytecode: bool,
) -> tuple[Tree, str | None]:
    if git_repo is not None:
        if not git_repo.is_dir():
            raise ReleaseError(f"git repository not found: {git_repo}")
        commit = _resolve_commit(git_repo, "HEAD" if ref is None else ref)
        return GitTree(git_repo, commit, sub, keep_bytecode=keep_bytecode), commit
    assert source_dir is not None
    if not source_dir.is_dir():
        raise ReleaseError(f"release source directory not found: {source_dir}")
    root = source_dir / sub if sub else source_dir
    if sub and not os.path.realpath(root).startswith(os.path.realpath(source_dir) + os.sep):
        raise ReleaseError(f"source subdir {sub!r} is outside {source_dir}")
    if not root.is_dir():
        raise ReleaseError(f"source subdir {sub!r} is not a directory in {source_dir}")
    # A work_dir inside the source holds earlier artifacts: never pack those.
    own = os.path.relpath(os.path.realpath(work_dir), os.path.realpath(root))
    return DirTree(root, exclude=[own], keep_bytecode=keep_bytecode), None


def build_release(
    *,
    source_dir: Path | None = None,
    git_repo: Path | None = None,
    ref: str | None = None,
    subdir: str | None = None,
    work_dir: Path,
    now: datetime | None = None,
    keep_bytecode: bool = False,
) -> Release:
    """Build `work_dir/release.tar.gz` from a directory or a git ref, after checking every path."""
    if (source_dir is None) == (git_repo is None):
        raise ReleaseError("give exactly one release source: a directory or a git repository")
    if ref is not None and git_repo is None:
        raise ReleaseError("a git ref was given for a directory source")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ReleaseError("the release time must be timezone-aware")
    built_at = now.astimezone(UTC).replace(microsecond=0)
    sub = _check_subdir(subdir) if subdir is not None else None
    work_dir.mkdir(parents=True, exist_ok=True)

    tree, commit = _source_tree(source_dir, git_repo, ref, sub, work_dir, keep_bytecode)
    entries = tree.entries()  # every member checked before anything is packed
    out = work_dir / ARCHIVE_NAME
    try:
        with Packer(out, mtime=int(built_at.timestamp())) as packer:
            for entry, content in tree.open([e.path for e in entries]):
                packer.add(entry, content)
            digest = _tree_digest(entries, packer.files)
            source = commit or f"dir:{digest}"
            stamp = built_at.strftime("%Y%m%dT%H%M%SZ")
            release_id = validate_release_id(f"{stamp}-{(commit or digest)[:7]}")
            packer.add_bytes(REVISION, _revision_text(release_id, source).encode())
            files = MappingProxyType(dict(packer.files))
            packer.add_bytes(MANIFEST, _manifest_text(files).encode())
    except OSError as exc:  # reading the source raises ReleaseError; this is the archive
        raise _write_failed(out, exc) from exc
    assert packer.result is not None
    return Release(
        id=release_id,
        commit=commit,
        archive=packer.result.archive,
        archive_sha256=packer.result.sha256,
        archive_size=packer.result.size,
        files=files,
        tree=tree,
        source=source,
        committed=commit_time(git_repo, commit) if git_repo is not None and commit else None,
    )
