"""Build one immutable release artifact per deploy, locally: a checked tree, REVISION, MANIFEST,
packed into a reproducible tar.gz. It never packs a path it has not checked first, never runs
git through a shell, and never writes outside `work_dir`.

Layout of the archive: the source's directories, files and symlinks sorted by path, then
`REVISION` and `MANIFEST` last. The generated files come last because they depend on the hashes
of everything before them, which lets every source file be read exactly once (hashed while it
is packed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import queue
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, BinaryIO, Literal

from deployer.errors import ReleaseError

__all__ = [
    "ARCHIVE_NAME",
    "MANIFEST",
    "RELEASE_ID_RE",
    "REVISION",
    "Entry",
    "FileEntry",
    "PackResult",
    "Packer",
    "Release",
    "build_release",
    "pack",
    "scan_tree",
    "validate_release_id",
]

RELEASE_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7}")
REVISION = "REVISION"
MANIFEST = "MANIFEST"
GENERATED = (REVISION, MANIFEST)
ARCHIVE_NAME = "release.tar.gz"

# Refs are passed to git as one argv element, but an allow-list still keeps out options
# (`-x`), revision ranges and `ref:path` lookups. Git itself rejects malformed ref names.
_REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,199}(?:[~^][0-9]{0,3})*")
_SKIP_NAMES = frozenset({".git", "__pycache__"})
_SKIP_SUFFIXES = (".pyc",)
# sha256sum escapes these in its format (and strips a trailing \r), so they cannot be listed.
_UNLISTABLE = re.compile(r"[\n\r\\]")
_CHUNK = 1 << 20


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
    """One checked member of a source tree."""

    path: str  # relative, '/'-separated
    kind: Literal["dir", "file", "symlink"]
    target: str | None = None  # symlink target


@dataclass(frozen=True)
class Release:
    id: str
    commit: str | None  # full commit sha for git sources
    archive: Path
    archive_sha256: str
    archive_size: int
    files: Mapping[str, FileEntry]  # every regular file, REVISION included, MANIFEST not
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> target
    dirs: tuple[str, ...] = ()
    root: Path | None = None  # the checked tree it was packed from (for delta packs)
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


# ------------------------------------------------------------------- checking a tree


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
    parts = rel.split("/")
    if ".." in parts:
        raise _reject(rel, "escapes the release root ('..' component)")
    if _UNLISTABLE.search(rel):
        raise _reject(rel, "contains a newline, carriage return or backslash")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(rel, "is not valid UTF-8") from None
    return rel


def _check_symlink(root: Path, rel: str, target: str) -> None:
    if not target:
        raise _reject(rel, "is a symlink with an empty target")
    if target.startswith("/"):
        raise _reject(rel, f"is a symlink to an absolute path ({target!r})")
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(rel, "is a symlink whose target is not valid UTF-8") from None
    # Lexically first: a target that climbs above the root only resolves "inside" by passing
    # through the root's own name, which is different on the host.
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / rel)
    if (
        lexical == ".."
        or lexical.startswith("../")
        or not (real == real_root or real.startswith(real_root + os.sep))
    ):
        raise _reject(rel, f"is a symlink that points outside the release ({target!r})")


def _skipped(name: str) -> bool:
    return name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES)


def _classify(root: Path, rel: str, st: os.stat_result) -> Entry:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return Entry(rel, "dir")
    if stat.S_ISREG(mode):
        return Entry(rel, "file")
    if stat.S_ISLNK(mode):
        target = os.readlink(root / rel)
        _check_symlink(root, rel, target)
        return Entry(rel, "symlink", target)
    kind = {
        stat.S_IFIFO: "a fifo",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
    }.get(stat.S_IFMT(mode), "a special file")
    raise _reject(rel, f"is {kind}")


def scan_tree(root: Path, *, exclude: Iterable[str] = ()) -> list[Entry]:
    """Check every member under `root` (not following symlinks) and return them sorted.

    Skips `.git`, `__pycache__`, `*.pyc` and the relative paths in `exclude`. Raises
    ReleaseError naming the first bad path.
    """
    entries: list[Entry] = []
    excluded = frozenset(exclude)

    def walk(rel_dir: str) -> None:
        with os.scandir(root / rel_dir if rel_dir else root) as it:
            children = sorted(it, key=lambda d: d.name)
        for child in children:
            if _skipped(child.name):
                continue
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            if rel in excluded:
                continue
            _check_rel_path(rel)
            if not rel_dir and child.name in GENERATED:
                raise _reject(rel, "is generated by the deployer and must not be in the source")
            entry = _classify(root, rel, child.stat(follow_symlinks=False))
            entries.append(entry)
            if entry.kind == "dir":
                walk(rel)

    walk("")
    entries.sort(key=lambda e: e.path)
    return entries


# ------------------------------------------------------------------------------ packing


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
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

    def flush(self) -> None:
        self._f.flush()


class _GzipWriter:
    """A gzip stream whose deflate runs on a worker thread (zlib releases the GIL), so reading
    and hashing the next files overlaps compressing the previous ones. Output is
    deterministic: no file name, a fixed mtime."""

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
    """Writes a reproducible tar.gz: owner root, empty owner names, fixed mtime, no
    group/other write or set-id bits. Files are hashed while they are added.

    The archive appears at `out` only when the packer closes without error.
    """

    def __init__(self, out: Path, *, mtime: int, compresslevel: int = 6) -> None:
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

    def _info(self, name: str, type_: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = type_
        info.mode = mode
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add(self, root: Path, rel: str) -> FileEntry | None:
        """Check and add one member of `root`; return its entry when it is a regular file."""
        _check_rel_path(rel)
        path = root / rel
        try:
            st = path.lstat()
        except OSError as exc:
            raise _reject(rel, f"could not be read: {exc.strerror}") from exc
        entry = _classify(root, rel, st)
        mode = stat.S_IMODE(st.st_mode) & 0o755
        if entry.kind == "dir":
            self._tar.addfile(self._info(rel, tarfile.DIRTYPE, mode))
            return None
        if entry.kind == "symlink":
            info = self._info(rel, tarfile.SYMTYPE, 0o777)
            info.linkname = entry.target or ""
            self._tar.addfile(info)
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            fst = os.fstat(f.fileno())
            if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                raise _reject(rel, "changed while the release was being packed")
            info = self._info(rel, tarfile.REGTYPE, mode)
            info.size = fst.st_size
            reader = _HashingReader(f)
            try:
                self._tar.addfile(info, reader)
            except OSError as exc:  # shrank while being read
                raise _reject(rel, f"could not be read completely: {exc}") from exc
        file_entry = FileEntry(reader.sha.hexdigest(), info.size, mode)
        self.files[rel] = file_entry
        return file_entry

    def add_bytes(self, rel: str, data: bytes, mode: int = 0o644) -> FileEntry:
        _check_rel_path(rel)
        info = self._info(rel, tarfile.REGTYPE, mode)
        info.size = len(data)
        self._tar.addfile(info, _BytesReader(data))
        file_entry = FileEntry(hashlib.sha256(data).hexdigest(), len(data), mode)
        self.files[rel] = file_entry
        return file_entry

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


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else self._pos + n
        chunk = bytes(self._view[self._pos : end])
        self._pos += len(chunk)
        return chunk


def pack(
    root: Path,
    paths: Iterable[str],
    out: Path,
    *,
    mtime: int,
    extra: Iterable[tuple[str, bytes]] = (),
) -> PackResult:
    """Pack `paths` (relative to `root`, in the order given) then the in-memory `extra` files.

    Used for full releases and for delta uploads (only changed files, plus every directory,
    symlink and the generated files). Compare the result's hashes with the Release's to be
    sure the source did not change since it was built.
    """
    with Packer(out, mtime=mtime) as packer:
        for rel in paths:
            packer.add(root, rel)
        for rel, data in extra:
            packer.add_bytes(rel, data)
    assert packer.result is not None
    return packer.result


# ------------------------------------------------------------------------------ sources


def _check_subdir(subdir: str) -> str:
    sub = subdir.strip("/")
    if not sub or subdir.startswith("/") or any(p in ("", ".", "..") for p in sub.split("/")):
        raise ReleaseError(f"source subdir must be a relative path inside the source: {subdir!r}")
    _check_rel_path(sub)
    return sub


def _git(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise ReleaseError(f"git {args[0]} failed in {repo}: {err or f'exit {proc.returncode}'}")
    return proc.stdout


def _resolve_commit(repo: Path, ref: str) -> str:
    if not _REF_RE.fullmatch(ref) or ".." in ref:
        raise ReleaseError(
            f"refusing git ref {ref!r}",
            hint="use a branch, tag or commit name such as main, v1.2.0 or a commit sha",
        )
    try:
        out = _git(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
        )
    except ReleaseError:
        raise ReleaseError(f"git ref {ref!r} is not a commit in {repo}") from None
    commit = out.decode().strip()
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        raise ReleaseError(f"git rev-parse returned an unexpected commit for {ref!r}: {commit!r}")
    return commit


def _tar_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    member = tar.next()
    while member is not None:
        yield member
        member = tar.next()


def _extract_tar(stream: IO[bytes], dest: Path) -> None:
    """Extract a `git archive` tar stream into the empty `dest`, checking each member first.

    Symlinks are created last, so no file is ever written through one; hardlinks become
    regular copies.
    """
    links: list[tuple[str, str]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in _tar_members(tar):
            rel = _check_rel_path(m.name.rstrip("/"))
            if not rel or rel == ".":
                continue
            if m.issym():
                if m.linkname.startswith("/"):
                    raise _reject(rel, f"is a symlink to an absolute path ({m.linkname!r})")
                links.append((rel, m.linkname))
                continue
            path = dest / rel
            mode = m.mode & 0o755
            if m.isdir():
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(mode | 0o700)
            elif m.isreg():
                path.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                _write_new(path, mode, src)
            elif m.islnk():
                original = dest / _check_rel_path(m.linkname)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(original, "rb") as src_file:
                    _write_new(path, mode, src_file)
            else:
                raise _reject(rel, "is a special file (device, fifo or socket) in the git archive")
    for rel, target in links:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest / rel)


def _write_new(path: Path, mode: int, src: IO[bytes]) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
        os.fchmod(out.fileno(), mode | 0o400)  # exact mode, whatever the local umask
        shutil.copyfileobj(src, out, _CHUNK)


def _git_tree(repo: Path, commit: str, subdir: str | None, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    treeish = f"{commit}:{subdir}" if subdir else commit
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "archive", "--format=tar", treeish],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        _extract_tar(proc.stdout, dest)
    except (tarfile.TarError, OSError) as exc:
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
        raise ReleaseError(f"git archive {treeish} failed in {repo}: {err or exc}") from exc
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise ReleaseError(f"git archive {treeish} failed in {repo}: {err}")


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
            sha.update(f"d {e.path}\n".encode())
    return sha.hexdigest()


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

    commit: str | None = None
    if git_repo is not None:
        if not git_repo.is_dir():
            raise ReleaseError(f"git repository not found: {git_repo}")
        commit = _resolve_commit(git_repo, "HEAD" if ref is None else ref)
        root = work_dir / "tree"
        _git_tree(git_repo, commit, sub, root)
    else:
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
    entries = scan_tree(root, exclude=[own])  # every member checked before anything is packed
    mtime = int(built_at.timestamp())
    stamp = built_at.strftime("%Y%m%dT%H%M%SZ")
    with Packer(work_dir / ARCHIVE_NAME, mtime=mtime) as packer:
        for e in entries:
            packer.add(root, e.path)
        digest = _tree_digest(entries, packer.files)
        source = commit if commit else f"dir:{digest}"
        release_id = validate_release_id(f"{stamp}-{(commit or digest)[:7]}")
        packer.add_bytes(REVISION, _revision_text(release_id, source).encode())
        files = MappingProxyType(dict(packer.files))
        packer.add_bytes(MANIFEST, _manifest_text(files).encode())
    result = packer.result
    assert result is not None
    return Release(
        id=release_id,
        commit=commit,
        archive=result.archive,
        archive_sha256=result.sha256,
        archive_size=result.size,
        files=files,
        symlinks=MappingProxyType({e.path: e.target or "" for e in entries if e.kind == "symlink"}),
        dirs=tuple(e.path for e in entries if e.kind == "dir"),
        root=root,
        source=source,
    )
