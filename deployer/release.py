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

import contextlib
import hashlib
import io
import os
import posixpath
import queue
import re
import stat
import struct
import subprocess
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, BinaryIO, Literal, Protocol

from deployer.errors import ReleaseError

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
REVISION = "REVISION"
MANIFEST = "MANIFEST"
ARCHIVE_NAME = "release.tar.gz"

# Refs are passed to git as one argv element, but an allow-list still keeps out options
# (`-x`), revision ranges and `ref:path` lookups. Git itself rejects malformed ref names.
_REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,199}(?:[~^][0-9]{0,3})*")
_SKIP_NAMES = frozenset({".git", "__pycache__"})
# sha256sum escapes these in its format (and strips a trailing \r), so they cannot be listed.
_UNLISTABLE = re.compile(r"[\n\r\\]")
_CHUNK = 1 << 20
# Deflate level 1: on a 44 MB app tree it packs about 5x faster than the default 6 for an
# archive about 6% larger. The build runs before anything is sent, alone on one core, while
# the bytes it saves are cheap on the wire, so the fastest level wins.
COMPRESSLEVEL = 1
_MAX_LINK_HOPS = 40


def validate_release_id(value: str) -> str:
    """Return `value` if it is a release id (`YYYYMMDDTHHMMSSZ-abcdef0`), else raise."""
    if not isinstance(value, str) or not RELEASE_ID_RE.fullmatch(value):
        raise ReleaseError(
            f"not a release id: {value!r}", hint="release ids look like 20240131T120000Z-1a2b3c4"
        )
    return value


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int
    mode: int  # permission bits as packed


@dataclass(frozen=True)
class Entry:
    """One checked member of a source tree, with the permission bits it is packed with."""

    path: str  # relative, '/'-separated
    kind: Literal["dir", "file", "symlink"]
    mode: int = 0o644
    size: int = 0  # files only
    target: str | None = None  # symlinks only

    @property
    def sort_key(self) -> str:
        return self.path + "/" if self.kind == "dir" else self.path


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


# ---------------------------------------------------------------------- checking paths


def _reject(path: str, why: str) -> ReleaseError:
    return ReleaseError(
        f"release source rejected: {path!r} {why}",
        hint="remove or replace that path in the source; releases may hold only regular "
        "files, directories and relative symlinks that stay inside the release",
    )


def _check_rel_path(rel: str) -> str:
    """A member name must be relative, without `..`, and listable in MANIFEST."""
    if rel.startswith("/"):
        raise _reject(rel, "is an absolute path")
    if ".." in rel.split("/"):
        raise _reject(rel, "escapes the release root ('..' component)")
    if _UNLISTABLE.search(rel):
        raise _reject(rel, "contains a newline, carriage return or backslash")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(rel, "is not valid UTF-8") from None
    return rel


def _skipped(rel: str) -> bool:
    return any(part in _SKIP_NAMES for part in rel.split("/")) or rel.endswith(".pyc")


def _link_escapes(rel: str, target: str, links: Mapping[str, str]) -> bool:
    """Resolve `rel -> target` within the tree, following the tree's other symlinks."""
    stack = rel.split("/")[:-1]
    pending = target.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        next_target = links.get("/".join(stack))
        if next_target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS or next_target.startswith("/"):
                return True
            stack.pop()
            pending = next_target.split("/") + pending
    return False


def _check_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Check the tree as a whole (links, duplicates) and return it in archive order."""
    seen: dict[str, Entry] = {}
    for e in entries:
        if e.path in seen:
            raise _reject(e.path, "appears twice in the source")
        if e.path in (REVISION, MANIFEST):
            raise _reject(e.path, "is generated by the deployer and must not be in the source")
        seen[e.path] = e
    links = {e.path: e.target or "" for e in seen.values() if e.kind == "symlink"}
    for rel, target in links.items():
        if not target:
            raise _reject(rel, "is a symlink with an empty target")
        if target.startswith("/"):
            raise _reject(rel, f"is a symlink to an absolute path ({target!r})")
        try:
            target.encode("utf-8")
        except UnicodeEncodeError:
            raise _reject(rel, "is a symlink whose target is not valid UTF-8") from None
        # Lexically too: a target that climbs above the root and comes back in does so
        # through the root's own name, which is different on the host.
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if lexical == ".." or lexical.startswith("../") or _link_escapes(rel, target, links):
            raise _reject(rel, f"is a symlink that points outside the release ({target!r})")
    return sorted(seen.values(), key=lambda e: e.sort_key)


# ----------------------------------------------------------------------------- sources


class Tree(Protocol):
    """A release source: every member checked up front, then read back for packing."""

    def entries(self) -> list[Entry]:
        """Every member, checked, in archive order. Raises ReleaseError naming a bad path."""
        ...

    def open(self, paths: Collection[str]) -> Iterator[tuple[Entry, IO[bytes] | None]]:
        """Yield the given members in archive order, files with a stream of their content
        (valid until the next item). Raises ReleaseError if one changed since `entries`."""
        ...


_SPECIAL = {
    stat.S_IFIFO: "a fifo",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class DirTree:
    """A local directory; symlinks are kept, never followed."""

    def __init__(self, root: Path, *, exclude: Collection[str] = ()) -> None:
        self.root = root
        self._exclude = frozenset(exclude)
        self._entries: list[Entry] | None = None

    def _entry(self, rel: str, st: os.stat_result) -> Entry:
        mode = stat.S_IMODE(st.st_mode) & 0o755
        if stat.S_ISDIR(st.st_mode):
            return Entry(rel, "dir", mode)
        if stat.S_ISREG(st.st_mode):
            return Entry(rel, "file", mode, st.st_size)
        if stat.S_ISLNK(st.st_mode):
            return Entry(rel, "symlink", 0o777, target=os.readlink(self.root / rel))
        raise _reject(rel, f"is {_SPECIAL.get(stat.S_IFMT(st.st_mode), 'a special file')}")

    def entries(self) -> list[Entry]:
        if self._entries is None:
            found: list[Entry] = []
            pending = [""]
            while pending:
                rel_dir = pending.pop()
                try:
                    children = list(os.scandir(self.root / rel_dir))
                except OSError as exc:
                    raise _reject(rel_dir or ".", f"could not be listed: {exc.strerror}") from exc
                for child in children:
                    rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
                    if _skipped(child.name) or rel in self._exclude:
                        continue
                    entry = self._entry(_check_rel_path(rel), child.stat(follow_symlinks=False))
                    found.append(entry)
                    if entry.kind == "dir":
                        pending.append(rel)
            self._entries = _check_entries(found)
        return self._entries

    def open(self, paths: Collection[str]) -> Iterator[tuple[Entry, IO[bytes] | None]]:
        checked = {e.path: e for e in self.entries()}
        for rel in sorted(paths, key=lambda p: checked[p].sort_key if p in checked else p):
            if rel not in checked:
                raise ReleaseError(f"{rel!r} is not in the release tree {self.root}")
            want = checked[rel]
            path = self.root / rel
            try:
                now = self._entry(rel, path.lstat())
                if now.kind != want.kind or now.target != want.target:
                    raise _reject(rel, "changed while the release was being built")
                if now.kind != "file":
                    yield now, None
                    continue
                with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        raise _reject(rel, "changed while the release was being built")
                    yield replace(now, size=st.st_size), f
            except OSError as exc:
                raise _reject(rel, f"could not be read: {exc.strerror}") from exc


class TarTree:
    """A tree read from a tar stream that can be produced again (e.g. by `git archive`).

    Read twice, never extracted: `entries` checks every member; `open` streams them for
    packing. Hardlinks become regular files with their target's content.
    """

    def __init__(
        self, open_stream: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
    ) -> None:
        self._open_stream = open_stream
        self._entries: list[Entry] | None = None
        self._hardlinks: dict[str, str] = {}  # path -> the earlier member whose content it has

    def _members(self) -> Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
        with self._open_stream() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            member = tar.next()
            while member is not None:
                rel = member.name.rstrip("/")
                if rel not in ("", ".") and not _skipped(_check_rel_path(rel)):
                    yield rel, member, tar
                member = tar.next()

    def entries(self) -> list[Entry]:
        if self._entries is None:
            found: dict[str, Entry] = {}
            for rel, m, _ in self._members():
                mode = m.mode & 0o755
                if m.isdir():
                    entry = Entry(rel, "dir", mode)
                elif m.isreg():
                    entry = Entry(rel, "file", mode, m.size)
                elif m.issym():
                    entry = Entry(rel, "symlink", 0o777, target=m.linkname)
                elif m.islnk():
                    original = found.get(_check_rel_path(m.linkname))
                    if original is None or original.kind != "file":
                        raise _reject(rel, f"is a hardlink to {m.linkname!r}, not an earlier file")
                    self._hardlinks[rel] = self._hardlinks.get(original.path, original.path)
                    entry = Entry(rel, "file", mode, original.size)
                else:
                    raise _reject(rel, "is a special file (device, fifo or socket)")
                if rel in found:
                    raise _reject(rel, "appears twice in the source")
                found[rel] = entry
            self._entries = _check_entries(found.values())
        return self._entries

    def open(self, paths: Collection[str]) -> Iterator[tuple[Entry, IO[bytes] | None]]:
        checked = {e.path: e for e in self.entries()}
        wanted = set(paths)
        if missing := sorted(wanted - set(checked)):
            raise ReleaseError(f"not in the release tree: {', '.join(map(repr, missing))}")
        needed = {self._hardlinks[p] for p in wanted if p in self._hardlinks}
        kept: dict[str, IO[bytes]] = {}  # contents hardlinks will need
        with contextlib.ExitStack() as stack:
            for rel, m, tar in self._members():
                if rel in self._hardlinks:
                    if rel in wanted:
                        source = kept[self._hardlinks[rel]]
                        source.seek(0)
                        yield checked[rel], source
                    continue
                data = tar.extractfile(m) if m.isreg() else None
                if rel in needed and data is not None:
                    copy = stack.enter_context(tempfile.SpooledTemporaryFile(_CHUNK))
                    while chunk := data.read(_CHUNK):
                        copy.write(chunk)
                    copy.seek(0)
                    kept[rel] = data = copy
                if rel in wanted:
                    yield checked[rel], data


class GitTree(TarTree):
    """One commit (optionally one subdirectory of it) of a local git repository."""

    def __init__(self, repo: Path, commit: str, subdir: str | None = None) -> None:
        self.repo = repo
        self.commit = commit
        self.treeish = f"{commit}:{subdir}" if subdir else commit
        super().__init__(self._archive)

    @contextlib.contextmanager
    def _archive(self) -> Iterator[IO[bytes]]:
        cmd = ["git", "-C", str(self.repo), "archive", "--format=tar", self.treeish]
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
            assert proc.stdout is not None
            try:
                yield proc.stdout
                proc.stdout.read()  # tar readers stop at the end marker; let git finish
            except tarfile.TarError as exc:  # git failed and cut the stream short
                proc.kill()
                raise self._failed(proc, errors, str(exc)) from exc
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            if proc.wait() != 0:
                raise self._failed(proc, errors, f"exit {proc.returncode}")

    def _failed(self, proc: subprocess.Popen[bytes], errors: IO[bytes], why: str) -> ReleaseError:
        proc.wait()
        errors.seek(0)
        err = errors.read().decode(errors="replace").strip()
        return ReleaseError(f"git archive {self.treeish} failed in {self.repo}: {err or why}")


# ------------------------------------------------------------------------------ packing


class _HashingReader:
    """Hashes what tarfile copies. tarfile asks for exactly the declared size, so a short
    read means the source shrank while being packed; that and read errors name the path."""

    def __init__(self, f: IO[bytes], path: str) -> None:
        self._f = f
        self._path = path
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._f.read(n)
        except (OSError, tarfile.TarError) as exc:
            raise _reject(self._path, f"could not be read: {exc}") from exc
        if n > 0 and len(data) < n:
            raise _reject(self._path, "changed while the release was being packed")
        self.sha.update(data)
        return data


class _HashingWriter:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)


class _GzipWriter:
    """A gzip stream whose deflate runs on a worker thread (zlib releases the GIL), so reading
    and hashing the next files overlaps compressing the previous ones (about 25% faster).
    Deterministic: no file name in the header, a fixed mtime."""

    def __init__(self, out: _HashingWriter, *, level: int, mtime: int) -> None:
        self._out = out
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0  # bytes accepted
        self._buf = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        out.write(b"\x1f\x8b\x08\x00" + struct.pack("<I", mtime) + b"\x00\xff")
        self._worker = threading.Thread(target=self._work, name="release-gzip", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._crc = zlib.crc32(chunk, self._crc)
                    self._out.write(self._deflate.compress(chunk))
                except BaseException as exc:  # re-raised by write() or close()
                    self._error = exc

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        self._buf += data
        self._size += len(data)
        if len(self._buf) >= _CHUNK:
            self._queue.put(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def tell(self) -> int:
        return self._size

    def close(self) -> None:
        if self._worker.is_alive():
            if self._buf:
                self._queue.put(bytes(self._buf))
                self._buf.clear()
            self._queue.put(None)
            self._worker.join()
            if self._error is not None:
                raise self._error
            self._out.write(self._deflate.flush())
            self._out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))


@dataclass(frozen=True)
class PackResult:
    archive: Path
    sha256: str
    size: int
    files: Mapping[str, FileEntry]  # regular files packed (generated ones included)


class Packer:
    """Writes a reproducible tar.gz: owner root with empty names, one fixed mtime, modes
    without group/other write or set-id bits. Files are hashed while they are added.

    The archive appears at `out` only when the packer closes without error.
    """

    def __init__(self, out: Path, *, mtime: int, compresslevel: int = COMPRESSLEVEL) -> None:
        self.out = out
        self.mtime = mtime
        self._tmp = out.with_name(out.name + ".part")
        self._raw: BinaryIO = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._hashing = _HashingWriter(self._raw)
        self._gz = _GzipWriter(self._hashing, level=compresslevel, mtime=mtime)
        self._tar = tarfile.TarFile(  # write-only: it never reads or seeks its fileobj
            fileobj=self._gz,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            copybufsize=_CHUNK,
        )
        self.files: dict[str, FileEntry] = {}
        self.result: PackResult | None = None

    def add(self, entry: Entry, content: IO[bytes] | None = None) -> FileEntry | None:
        """Add one checked member; files need `content`. Returns a file's manifest entry."""
        info = tarfile.TarInfo(_check_rel_path(entry.path))
        info.mode = entry.mode & 0o755 if entry.kind != "symlink" else 0o777
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
            self._tar.addfile(info)
            return None
        if entry.kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = entry.target or ""
            self._tar.addfile(info)
            return None
        assert content is not None, entry.path
        info.size = entry.size
        reader = _HashingReader(content, entry.path)
        self._tar.addfile(info, reader)
        file_entry = FileEntry(reader.sha.hexdigest(), info.size, info.mode)
        self.files[entry.path] = file_entry
        return file_entry

    def add_bytes(self, rel: str, data: bytes, mode: int = 0o644) -> FileEntry:
        result = self.add(Entry(rel, "file", mode, len(data)), io.BytesIO(data))
        assert result is not None
        return result

    def close(self) -> PackResult:
        self._tar.close()
        self._gz.close()
        self._raw.close()
        os.replace(self._tmp, self.out)
        self.result = PackResult(
            self.out,
            self._hashing.sha.hexdigest(),
            self._hashing.size,
            MappingProxyType(dict(self.files)),
        )
        return self.result

    def abort(self) -> None:
        for closer in (self._tar.close, self._gz.close, self._raw.close):
            with contextlib.suppress(Exception):  # already failing; keep the first error
                closer()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Packer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def pack(
    tree: Tree,
    paths: Collection[str],
    out: Path,
    *,
    mtime: int,
    extra: Iterable[tuple[str, bytes]] = (),
) -> PackResult:
    """Pack the members `paths` of `tree` in archive order, then the in-memory `extra` files.

    For delta uploads: only changed files, plus every directory and symlink, plus
    `Release.generated_files()`. Compare the result's hashes with the Release's to be sure
    the source did not change since it was built.
    """
    try:
        with Packer(out, mtime=mtime) as packer:
            for entry, content in tree.open(paths):
                packer.add(entry, content)
            for rel, data in extra:
                packer.add_bytes(rel, data)
    except OSError as exc:  # reading the source raises ReleaseError; this is the archive
        raise _write_failed(out, exc) from exc
    assert packer.result is not None
    return packer.result


def _write_failed(out: Path, exc: OSError) -> ReleaseError:
    return ReleaseError(
        f"cannot write the release archive {out}: {exc.strerror or exc}",
        hint="check free space and permissions of the work directory",
    )


# ------------------------------------------------------------------------------ building


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
) -> tuple[Tree, str | None]:
    if git_repo is not None:
        if not git_repo.is_dir():
            raise ReleaseError(f"git repository not found: {git_repo}")
        commit = _resolve_commit(git_repo, "HEAD" if ref is None else ref)
        return GitTree(git_repo, commit, sub), commit
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
    return DirTree(root, exclude=[own]), None


def build_release(
    *,
    source_dir: Path | None = None,
    git_repo: Path | None = None,
    ref: str | None = None,
    subdir: str | None = None,
    work_dir: Path,
    now: datetime | None = None,
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

    tree, commit = _source_tree(source_dir, git_repo, ref, sub, work_dir)
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
    )
