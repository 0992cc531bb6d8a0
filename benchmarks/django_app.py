"""Generate the benchmark's heavyweight release: a small Django project (benchmarks/app-django/)
with its dependencies vendored, as `pip install --target vendor/` leaves them: Django and
gunicorn wheels at pinned versions, unpacked into vendor/ with their bytecode compiled. About
4,800 files and 44 MB; a restart takes seconds (gunicorn's master, then two workers that
import Django), as real apps' do.

Wheels come from PyPI once (`pip download --only-binary=:all: --python-version 3.11`, the
sandbox hosts' Python) into a cache beside the tree; the tree is rebuilt only when the pins or
the project's files change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from benchmarks.tree import STAMP, TreeInfo, tree_info

HERE = Path(__file__).resolve().parent
PROJECT_SOURCE = HERE / "app-django"
HOST_PYTHON = "3.11"  # python3 in the sandbox image (Debian bookworm)
# Exact pins, dependencies included (downloaded with --no-deps: nothing floats).
REQUIREMENTS = (
    "django==5.2.19",
    "gunicorn==23.0.0",
    "asgiref==3.13.0",
    "sqlparse==0.6.1",
    "packaging==26.4",
)
CHANGED_FILE = "benchsite/views.py"  # the one file a redeploy changes


def download_wheels(cache: Path) -> list[Path]:
    """The pinned wheels, from PyPI into `cache` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("*.whl"))
    if len(wheels) == len(REQUIREMENTS):
        return wheels
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary=:all:", "--python-version", HOST_PYTHON, "--dest", str(cache),
         *REQUIREMENTS],
        check=True,
    )  # fmt: skip
    wheels = sorted(cache.glob("*.whl"))
    if len(wheels) != len(REQUIREMENTS):
        raise RuntimeError(f"expected {len(REQUIREMENTS)} wheels in {cache}, found {wheels}")
    return wheels


def generate(root: Path, cache: Path) -> TreeInfo:
    """Write the release tree under `root` (reused when already built from the same pins and
    project files); wheels are cached in `cache`."""
    stamp = root.with_name(root.name + STAMP)  # beside the tree: never deployed
    wanted = json.dumps({"requirements": REQUIREMENTS, "project": _project_digest()})
    if stamp.exists() and stamp.read_text() == wanted:
        return tree_info(root)
    wheels = download_wheels(cache)
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(PROJECT_SOURCE, root)
    (root / "bin" / "restart").chmod(0o755)
    vendor = root / "vendor"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(vendor)
    _compile(vendor)
    stamp.write_text(wanted)
    return tree_info(root)


def _compile(vendor: Path) -> None:
    """Bytecode for the vendored packages, as pip compiles it at install. Unchecked-hash .pyc
    files stay valid whatever mtimes an unpacking tool leaves, so no host recompiles them (and
    releases stay unwritten). Needs this interpreter to be the hosts' Python version."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != HOST_PYTHON:
        print(f"django app: not precompiling vendor/ (this Python is not {HOST_PYTHON})")
        return
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
         str(vendor)],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _project_digest() -> str:
    sha = hashlib.sha256()
    for path in sorted(PROJECT_SOURCE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            sha.update(str(path.relative_to(PROJECT_SOURCE)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()[:16]
