"""Generate the benchmark's release tree: a Python web app with its dependencies vendored,
about 3,000 files and 40 MB, byte-for-byte the same for the same seed.

Shape (like a real `pip install --target vendor/` of a mid-sized web app): many small .py
files, type stubs and package metadata, a few dozen compiled extension modules of 100 KB to
2 MB (half incompressible, half low-entropy, so the tar.gz is roughly half the tree), and
static assets. The app's own server.py, bin/restart and config/ come from benchmarks/app/.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_SOURCE = HERE / "app"
GENERATOR_VERSION = "1"  # bump when the shape changes: the cached tree is then rebuilt
STAMP = ".stamp"
CHANGED_FILE = "benchapp/views.py"  # the one file a redeploy changes

_WORDS = (  # noqa: SIM905 - a word list reads best as text
    "self request response session config value result items data user token cache query "
    "handler router model field schema record context parser buffer stream header "
    "payload timeout retry client server engine column index manager factory adapter "
    "registry state event signal logger metrics backend options params encode decode "
    "validate serialize connect dispatch resolve render commit rollback fetch update "
    "insert delete select"
).split()
_KEYWORDS = ("return", "if", "for", "while", "yield", "raise", "assert", "with", "elif")


@dataclass(frozen=True)
class TreeInfo:
    root: Path
    files: int
    bytes: int


def _ident(rng: random.Random) -> str:
    return "_".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))


def _line_pool(rng: random.Random, size: int) -> list[str]:
    """Python-looking lines to assemble modules from (compresses like real code, ~3-4x)."""
    pool: list[str] = []
    for _ in range(size):
        indent = "    " * rng.randint(0, 3)
        kind = rng.random()
        if kind < 0.12:
            line = f"def {_ident(rng)}({', '.join(_ident(rng) for _ in range(rng.randint(0, 4)))}):"
        elif kind < 0.18:
            line = f"class {_ident(rng).title().replace('_', '')}({_ident(rng).title()}):"
        elif kind < 0.30:
            line = f'"""{" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))}."""'
        elif kind < 0.40:
            line = f"# {' '.join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))}"
        elif kind < 0.55:
            line = f"{rng.choice(_KEYWORDS)} {_ident(rng)}.{_ident(rng)}({_ident(rng)})"
        else:
            args = ", ".join(
                f"{_ident(rng)}={rng.randint(0, 9999)}" for _ in range(rng.randint(0, 3))
            )
            line = f"{_ident(rng)} = {_ident(rng)}.{_ident(rng)}({args})"
        pool.append(indent + line)
    return pool


def _text(rng: random.Random, pool: list[str], size: int) -> bytes:
    out: list[str] = []
    total = 0
    while total < size:
        line = rng.choice(pool)
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()


_LOW_ENTROPY = bytes(i % 5 for i in range(256))  # maps random bytes onto 5 values


def _binary(rng: random.Random, size: int) -> bytes:
    """Alternating 16 KiB blocks: random (incompressible) and low-entropy (~3x compressible)."""
    blocks = []
    remaining = size
    incompressible = True
    while remaining > 0:
        n = min(16384, remaining)
        block = rng.randbytes(n)
        blocks.append(block if incompressible else block.translate(_LOW_ENTROPY))
        incompressible = not incompressible
        remaining -= n
    return b"".join(blocks)


def _files(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    pool = _line_pool(rng, 6000)
    files: dict[str, bytes] = {}

    # The application's own package.
    for i in range(120):
        name = "views.py" if i == 0 else f"{_ident(rng)}_{i}.py"
        files[f"benchapp/{name}"] = _text(rng, pool, rng.randint(1500, 20000))
    files["benchapp/__init__.py"] = b'"""benchapp."""\n'

    # Vendored dependencies: 48 packages of varying size.
    for p in range(48):
        pkg = f"vendor/{rng.choice(_WORDS)}{rng.choice(_WORDS)}{p}"
        modules = rng.randint(16, 66)
        subpackages = [""] + [f"{_ident(rng)}/" for _ in range(rng.randint(0, 4))]
        for m in range(modules):
            sub = rng.choice(subpackages)
            size = int(rng.lognormvariate(8.2, 0.9))  # median ~3.6 KB, a long tail
            files[f"{pkg}/{sub}{_ident(rng)}_{m}.py"] = _text(rng, pool, min(size, 120_000))
            if rng.random() < 0.15:
                files[f"{pkg}/{sub}{_ident(rng)}_{m}.pyi"] = _text(rng, pool, size // 4 + 100)
        for sub in subpackages:
            files[f"{pkg}/{sub}__init__.py"] = _text(rng, pool, rng.randint(50, 1500))
        dist = f"{pkg}-{rng.randint(0, 9)}.{rng.randint(0, 30)}.dist-info"
        files[f"{dist}/METADATA"] = _text(rng, pool, rng.randint(1000, 12000))
        files[f"{dist}/LICENSE"] = _text(rng, pool, rng.randint(1000, 3000))
        files[f"{dist}/RECORD"] = _text(rng, pool, rng.randint(800, 8000))
        files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
        if p % 3 == 0:  # compiled extension modules
            for e in range(rng.randint(1, 2)):
                size = rng.randint(100_000, 2_000_000)
                files[f"{pkg}/_{_ident(rng)}{e}.cpython-311-x86_64-linux-gnu.so"] = _binary(
                    rng, size
                )

    # Static assets: scripts and styles (text), images and fonts (binary).
    for s in range(260):
        if s % 3 == 0:
            files[f"static/img/{_ident(rng)}_{s}.png"] = _binary(rng, rng.randint(2000, 90_000))
        else:
            ext = "js" if s % 3 == 1 else "css"
            files[f"static/{ext}/{_ident(rng)}_{s}.{ext}"] = _text(
                rng, pool, rng.randint(500, 40_000)
            )
    vendored = sorted({k.split("/")[1] for k in files if k.startswith("vendor/")})
    files["requirements.txt"] = ("\n".join(vendored) + "\n").encode()
    files["config/README"] = b"app.ini is rendered here per host at deploy time.\n"
    return files


def generate(root: Path, seed: int) -> TreeInfo:
    """Write the tree under `root` (reused when already generated with the same seed)."""
    stamp = root.with_name(root.name + STAMP)  # beside the tree: never deployed
    wanted = json.dumps({"seed": seed, "version": GENERATOR_VERSION, "app": _app_digest()})
    if stamp.exists() and stamp.read_text() == wanted:
        return tree_info(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for rel, data in _files(seed).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    shutil.copytree(APP_SOURCE, root, dirs_exist_ok=True)
    (root / "bin" / "restart").chmod(0o755)
    stamp.write_text(wanted)
    return tree_info(root)


def set_change(root: Path, generation: int, changed_file: str = CHANGED_FILE) -> None:
    """Make `changed_file` differ from the generated one (generation 0 restores it)."""
    path = root / changed_file
    base = path.read_bytes().split(b"\n# benchmark change ")[0]
    if generation:
        base += f"\n# benchmark change {generation}\n".encode()
    path.write_bytes(base)


def _app_digest() -> str:
    sha = hashlib.sha256()
    for path in sorted(APP_SOURCE.rglob("*")):
        if path.is_file():
            sha.update(str(path.relative_to(APP_SOURCE)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()[:16]


def tree_info(root: Path) -> TreeInfo:
    files = [p for p in root.rglob("*") if p.is_file()]
    return TreeInfo(root, len(files), sum(p.stat().st_size for p in files))
