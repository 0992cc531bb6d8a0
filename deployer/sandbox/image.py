"""Build (or reuse) the Debian bookworm image that every sandbox host runs, without a registry.

The image is debootstrapped from Debian's archive and imported with `docker import`; its tag
is a hash of the whole recipe, so an unchanged recipe never rebuilds. It must never pull from
an image registry (none is reachable) nor leave the build root behind.

Run `python -m deployer.sandbox.image` to build it ahead of time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

from deployer.errors import DeployerError

__all__ = ["IMAGE_REPOSITORY", "SandboxError", "ensure_image", "image_name"]

IMAGE_REPOSITORY = "deployer-host"
SUITE = "bookworm"
# What a deploy host needs: sshd, sudo, a Python with its full stdlib (python3-minimal lacks
# http), curl for health checks on the host, procps/iproute2 for pkill and ss, and rsync for
# the benchmark's Ansible row that sends only changed files (ansible.posix.synchronize).
BASE_PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "sudo",
    "python3",
    "ca-certificates",
    "curl",
    "procps",
    "iproute2",
    "rsync",
)
# Installed with apt inside the chroot after debootstrap: a load balancer and a SQLite CLI
# for later tests; a few seconds on top of debootstrap.
EXTRA_PACKAGES: tuple[str, ...] = ("nginx-light", "sqlite3")
ENTRYPOINT_PATH = "/usr/local/sbin/deployer-host-entrypoint"
IMPORT_CHANGES: tuple[str, ...] = (f"CMD {json.dumps([ENTRYPOINT_PATH])}",)
LOCK_PATH = Path(tempfile.gettempdir()) / "deployer-host-image.lock"


class SandboxError(DeployerError):
    """The sandbox image or fleet could not be built, started or driven."""


def _script(name: str) -> str:
    return (resources.files("deployer.sandbox") / name).read_text(encoding="utf-8")


def image_name() -> str:
    """The image reference for the current recipe: `deployer-host:<12 hex digits>`."""
    recipe = json.dumps(
        {
            "suite": SUITE,
            "packages": BASE_PACKAGES,
            "extra_packages": EXTRA_PACKAGES,
            "configure": _script("configure-host.sh"),
            "entrypoint": _script("entrypoint.sh"),
            "entrypoint_path": ENTRYPOINT_PATH,
            "changes": IMPORT_CHANGES,
        },
        sort_keys=True,
    )
    return f"{IMAGE_REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def _say(message: str) -> None:
    print(f"sandbox image: {message}", file=sys.stderr, flush=True)


def _as_root(argv: Sequence[str]) -> list[str]:
    # debootstrap, chroot and removing root-owned trees need root; a developer's shell may not be.
    return list(argv) if os.geteuid() == 0 else ["sudo", "-n", *argv]


def _image_exists(name: str) -> bool:
    found = subprocess.run(
        ["docker", "image", "inspect", name], capture_output=True, text=True, check=False
    )
    return found.returncode == 0


def _run_logged(
    argv: Sequence[str], log: Path, what: str, *, env: dict[str, str] | None = None
) -> None:
    """Run a noisy build step into a log file; on failure show its tail, not the whole log."""
    with log.open("ab") as out:
        done = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SandboxError(f"{what} failed with exit code {done.returncode}:\n{tail}")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _remove_build_dir(build_dir: Path) -> None:
    # A failed debootstrap can leave /proc or /sys mounted inside the root; deleting through a
    # live mount would reach the host's own files, so unmount (deepest first) before removing.
    for point in sorted(_mounts_under(build_dir), key=len, reverse=True):
        subprocess.run(_as_root(["umount", "-l", point]), check=False)
    if _mounts_under(build_dir):
        raise SandboxError(f"refusing to remove {build_dir}: something is still mounted in it")
    subprocess.run(_as_root(["rm", "-rf", "--one-file-system", str(build_dir)]), check=True)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    # Parallel test workers or scripts may all find the image missing; build it only once.
    with LOCK_PATH.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(name: str) -> None:
    for tool in ("debootstrap", "docker", "tar", "chroot"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            raise SandboxError(f"{tool} is not installed (run scripts/setup)")
    # /var/tmp is on disk: the root is a few hundred MB and /tmp may be a small tmpfs.
    build_dir = Path(tempfile.mkdtemp(prefix="deployer-host-", dir="/var/tmp"))
    root = build_dir / "root"
    log = build_dir / "build.log"
    started = time.monotonic()
    try:
        _say(f"debootstrap {SUITE} into {root} (about a minute; log {log})")
        _run_logged(
            _as_root(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    str(root),
                ]
            ),
            log,
            "debootstrap",
        )
        _say(f"debootstrap done in {time.monotonic() - started:.0f}s; configuring")

        configure = build_dir / "configure-host.sh"
        configure.write_text(_script("configure-host.sh"), encoding="utf-8")
        entrypoint = build_dir / "entrypoint.sh"
        entrypoint.write_text(_script("entrypoint.sh"), encoding="utf-8")
        subprocess.run(
            _as_root(["install", "-m", "0755", str(entrypoint), f"{root}{ENTRYPOINT_PATH}"]),
            check=True,
        )
        subprocess.run(
            _as_root(["install", "-m", "0755", str(configure), f"{root}/tmp/configure-host.sh"]),
            check=True,
        )
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "EXTRA_PACKAGES": " ".join(EXTRA_PACKAGES),
            "HOME": "/root",
        }
        # `env` after sudo: sudo would otherwise drop EXTRA_PACKAGES.
        _run_logged(
            _as_root(
                [
                    "env",
                    *(f"{k}={v}" for k, v in env.items()),
                    "chroot",
                    str(root),
                    "/bin/bash",
                    "/tmp/configure-host.sh",
                ]
            ),
            log,
            "configuring the host root",
        )
        subprocess.run(_as_root(["rm", "-f", f"{root}/tmp/configure-host.sh"]), check=True)

        _say(f"configured at {time.monotonic() - started:.0f}s; importing into docker")
        _import(root, name)
        _say(f"built {name} in {time.monotonic() - started:.0f}s")
    finally:
        _remove_build_dir(build_dir)


def _import(root: Path, name: str) -> None:
    changes = [arg for change in IMPORT_CHANGES for arg in ("-c", change)]
    # --numeric-owner: the root's uids belong to the image, not to the build machine's names.
    tar = subprocess.Popen(
        _as_root(["tar", "--numeric-owner", "-C", str(root), "-c", "."]), stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    try:
        imported = subprocess.run(
            ["docker", "import", *changes, "-", name],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        tar.stdout.close()
        tar_status = tar.wait()
    if tar_status != 0 or imported.returncode != 0:
        raise SandboxError(
            f"importing {name} failed (tar exit {tar_status}, docker import exit "
            f"{imported.returncode}): {imported.stderr.strip()}"
        )


def ensure_image() -> str:
    """Return the sandbox host image reference, building it first if this recipe has none yet."""
    name = image_name()
    if _image_exists(name):
        return name
    with _build_lock():
        if _image_exists(name):  # another process built it while we waited for the lock
            return name
        _build(name)
    return name


def main() -> int:
    started = time.monotonic()
    try:
        name = ensure_image()
    except (SandboxError, subprocess.CalledProcessError) as error:
        _say(f"error: {error}")
        return 1
    _say(f"ready: {name} ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
