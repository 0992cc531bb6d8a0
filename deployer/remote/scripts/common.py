"""Shared parts of the remote scripts: the layout of an application's directory tree on a
host, the exit codes and output marker the orchestrator reads, the rendered files a stage
session receives, and the small shell fragments several phases use. Pure: no I/O.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deployer.remote.shell import Raw, cmd, q

# Exit codes our scripts use for conditions the orchestrator tells apart.
EXIT_LOCK_HELD = 75
EXIT_CHECKSUM = 65
EXIT_MISSING_RELEASE = 66
EXIT_UNSAFE_LAYOUT = 67  # a symlinked path under deploy_to (see prepare.refuse_symlinks)
EXIT_VERIFY = 68  # a release's files do not match the MANIFEST they must match

MARK = "@@"
FREE_KB = "awk 'NR==2 {print $4}'"  # the "Available" column of `df -Pk`
# A run's own temporary `current` link is `.current.<run id>` (12 hex digits, see
# runner.new_run_id). Debris of a killed run is removed only when it is exactly that: a
# symlink with such a name pointing into our releases/. Anything else is someone else's.
_OWN_LINK = "[0-9a-f]" * 12
FINISHING = "finishing"  # a file in the lock directory: the run's outcome is recorded
STALE_FINISH = 300  # seconds after which a recorded run's unfinished cleanup no longer holds


@dataclass(frozen=True)
class Layout:
    """Paths of one application's directory tree on a host."""

    root: str

    @property
    def releases(self) -> str:
        return posixpath.join(self.root, "releases")

    @property
    def shared(self) -> str:
        return posixpath.join(self.root, "shared")

    @property
    def current(self) -> str:
        return posixpath.join(self.root, "current")

    @property
    def state(self) -> str:
        return posixpath.join(self.root, ".deploy")

    @property
    def lock(self) -> str:
        return posixpath.join(self.state, "lock")

    @property
    def history(self) -> str:
        return posixpath.join(self.state, "history.jsonl")

    @property
    def staging(self) -> str:
        return posixpath.join(self.state, "staging")

    def release(self, release_id: str) -> str:
        return posixpath.join(self.releases, release_id)


@dataclass(frozen=True)
class RenderedFile:
    """One rendered template. Its content may hold secrets: it travels only on stdin."""

    dest: str  # relative to the release, or to shared/ when `shared`
    mode: int
    content: bytes = field(repr=False)
    shared: bool = False


@dataclass(frozen=True)
class HostFiles:
    """A host's rendered templates as the stage session receives them: the release's in one
    tar, each shared one as its own stdin segment."""

    files: tuple[RenderedFile, ...] = ()
    tar: bytes = field(default=b"", repr=False)  # the files that are not `shared`

    @classmethod
    def pack(cls, files: Sequence[RenderedFile]) -> HostFiles:
        in_release = [f for f in files if not f.shared]
        if not in_release:
            return cls(tuple(files))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for item in in_release:
                info = tarfile.TarInfo(item.dest)
                info.size = len(item.content)
                info.mode = item.mode
                info.mtime = 0
                tar.addfile(info, io.BytesIO(item.content))
            end = tar.offset
        # tarfile pads an archive to 10 KiB records: on a few small templates that was most
        # of a store-mode deploy's bytes per host (issue 18). GNU tar reads a stream that
        # stops after the end-of-archive marker (two zero blocks) just as well.
        return cls(tuple(files), buf.getvalue()[: end + 2 * tarfile.BLOCKSIZE])

    @property
    def shared(self) -> tuple[RenderedFile, ...]:
        return tuple(f for f in self.files if f.shared)

    def __bool__(self) -> bool:
        return bool(self.tar or self.shared)


def _or_explain(command: str, what: str, where: str) -> str:
    """Run `command`; on failure say what failed and how much space is left under `where`
    (a full disk shows up here as a terse 'error writing standard output')."""
    free = f'"$(df -Pk {q(where)} 2>/dev/null | {FREE_KB})"'
    report = cmd("printf", "%s failed (%s KiB free on the filesystem of %s)\\n", what)
    return f"{command} || {{ {report} {free} {q(where)} >&2; exit 1; }}"


def section(key: str, command: str) -> str:
    """`@@<key> <base64 of command's stdout>` on one line; the command's stderr is dropped
    (error messages can quote file names, which a host's user chooses). How every value a
    host decides travels, so that none can pose as a marker line (`deployer.facts.decode`)."""
    return f"printf '%s ' {q(MARK + key)}; {{ {command}; }} 2>/dev/null | base64 -w0; echo"


def _step(name: str) -> str:
    return cmd("echo", f"{MARK}step {name}")


def _exports(env: Mapping[str, str]) -> list[str]:
    return [cmd("export", Raw(f"{key}={q(value)}")) for key, value in sorted(env.items())]


def _unlock_if_ours(layout: Layout, run_id: str) -> str:
    info = posixpath.join(layout.lock, "info")
    # The shell's own `read`, not grep: one process less to start on every host at the end of
    # every run, when a busy machine makes each new process wait for a CPU (issue 18).
    return (
        f"if [ -f {q(info)} ]; then held=; IFS= read -r -d '' held < {q(info)} || true;"
        f" case $held in *{q(run_id)}*) rm -rf {q(layout.lock)} ;; esac; fi"
    )


def _append_history(layout: Layout, records: Sequence[str]) -> list[str]:
    return [cmd("printf", "%s\\n", record, Raw(">>"), layout.history) for record in records]


def _remove_release(path: str) -> str:
    # Releases are read-only; make them writable again only to delete them.
    return f"if [ -d {q(path)} ]; then chmod -R u+w {q(path)}; rm -rf {q(path)}; fi"
