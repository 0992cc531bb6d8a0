"""Delta uploads: when a host already runs a release whose MANIFEST we know, send only the
files that changed (plus every directory, symlink, REVISION and MANIFEST) and hard-link the
unchanged ones from that release on the host. Every release stays complete and immutable:
the bytes sent are verified by the delta archive's sha256, and the linked files are the base
release's own inodes (verified when it was staged, read-only, and its MANIFEST matched).

Deciding is pure; packing reads the release's source tree once more.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import ReleaseError
from deployer.release import MANIFEST, REVISION, Release, pack


@dataclass(frozen=True)
class Baseline:
    """What a host's current release holds: path -> (sha256, executable)."""

    release_id: str
    digest: str  # sha256 of its MANIFEST file, to match other hosts cheaply
    files: Mapping[str, tuple[str, bool]]


@dataclass(frozen=True)
class Delta:
    base: str  # release id the unchanged files are linked from
    archive: Path
    archive_sha256: str
    archive_size: int
    link_list: bytes  # gzip of NUL-separated paths to hard-link from the base
    changed: tuple[str, ...]
    linked: int


def parse_baseline(
    release_id: str, digest: str, manifest: list[str], modes: list[str]
) -> Baseline | None:
    """From the host's MANIFEST lines and `find -printf '%m %P'` lines; None if unusable."""
    executable: dict[str, bool] = {}
    for line in modes:
        mode, _, path = line.partition(" ")
        try:
            executable[path] = bool(int(mode, 8) & 0o100)
        except ValueError:
            return None
    files: dict[str, tuple[str, bool]] = {}
    for line in manifest:
        sha, sep, path = line.partition("  ")
        if not sep or len(sha) != 64 or path not in executable:
            return None
        files[path] = (sha, executable[path])
    return Baseline(release_id, digest, files) if files else None


def changed_paths(release: Release, baseline: Baseline) -> list[str]:
    """Files of `release` that must travel: new, different content, or a different exec bit."""
    out = []
    for path, entry in release.files.items():
        if path in (REVISION, MANIFEST):
            continue  # always regenerated and sent
        old = baseline.files.get(path)
        if old is None or old != (entry.sha256, bool(entry.mode & 0o100)):
            out.append(path)
    return out


def build_delta(release: Release, baseline: Baseline, work_dir: Path) -> Delta:
    if release.tree is None:
        raise ReleaseError("this release cannot be packed again (no source tree)")
    changed = set(changed_paths(release, baseline))
    entries = release.tree.entries()
    paths = [e.path for e in entries if e.kind != "file" or e.path in changed]
    result = pack(
        release.tree,
        paths,
        work_dir / f"delta-{baseline.release_id}.tar.gz",
        mtime=release.mtime,
        extra=release.generated_files(),
    )
    for path in changed:
        if result.files[path].sha256 != release.files[path].sha256:
            raise ReleaseError(
                f"{path} changed while the release was being packed",
                hint="build from a clean checkout or a git ref",
            )
    linked = sorted(p for p in release.files if p not in changed and p not in (REVISION,))
    return Delta(
        base=baseline.release_id,
        archive=result.archive,
        archive_sha256=result.sha256,
        archive_size=result.size,
        link_list=gzip.compress(b"\0".join(p.encode() for p in linked), mtime=0),
        changed=tuple(sorted(changed)),
        linked=len(linked),
    )
