"""What verifying a staged release costs a host (issues 14 and 18): the benchmark's release tree
(seed 2026, about 2,900 files and 44 MB) is built into an archive and unpacked as a host's
stage does, then checked three ways, each timed in wall and CPU seconds (user + system of the
processes it starts):

- `before`: what the stage step ran until issue 18 on every tree, whole or delta: `sha256sum
  -c` of every file against the MANIFEST, plus the regular-file count;
- `whole archive`: what it runs now after unpacking a whole archive (`verify_tree` without a
  base record): the tree holds exactly the MANIFEST's regular files, and its record is written;
  contents are proven by the archive's sha256 and tar's status, so nothing is read again;
- `one-file delta`: a redeploy changing one file, its tree hard-linked from the staged release
  as the stage step does (`cp -l`), checked against that release's record: only the files the
  record does not vouch for (the changed one and REVISION) are hashed.

    .venv/bin/python -m benchmarks.verify_cost [--runs 5] [--dir /dev/shm]

The same coreutils on the same CPU as the sandbox hosts; `--dir /dev/shm` mirrors the
benchmark hosts' tmpfs `/srv`. Runs on this machine only: no host, no network.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import tree as bench_tree
from deployer.release import MANIFEST, build_release
from deployer.remote.scripts.stage import verify_tree

# What `scripts.stage` ran before issue 18 (its `verify_tree`), kept here as the reference.
BEFORE = (
    "(cd {tree} && sha256sum -c --quiet --strict MANIFEST) >&2\n"
    'files="$(cd {tree} && find . -type f | wc -l)"\n'
    'listed="$(wc -l < {tree}/MANIFEST)"\n'
    '[ "$files" = "$((listed + 1))" ]'
)


def _timed(script: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the processes it starts)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(["bash", "-c", "set -eu\n" + script], check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _line(name: str, figures: list[tuple[float, float]]) -> str:
    wall = [w for w, _ in figures]
    cpu = [c for _, c in figures]
    return (
        f"{name:<34} CPU median {statistics.median(cpu):.3f} s"
        f" (min {min(cpu):.3f}, max {max(cpu):.3f}); wall median {statistics.median(wall):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm", help="where to unpack (a tmpfs by default)")
    parser.add_argument("--work", default=str(Path(__file__).resolve().parent / "work"))
    args = parser.parse_args()
    source = Path(args.work) / "verify-cost" / "tree"
    info = bench_tree.generate(source, seed=2026)
    with tempfile.TemporaryDirectory(dir=args.work) as build_dir:
        release = build_release(source_dir=source, work_dir=Path(build_dir))
        changed = sorted(p for p in release.files if p.endswith(".py"))[0]
        unpack, before, whole, delta = [], [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(dir=args.dir) as target:
                tree, record = f"{target}/tree", f"{target}/record"
                unpack.append(
                    _timed(f"mkdir {tree} && tar -xzf {release.archive} -C {tree} --no-same-owner")
                )
                before.append(_timed(BEFORE.format(tree=tree)))
                check = verify_tree(
                    tree, "benchmark release", record=record, base_record=None, records=target
                )
                whole.append(_timed("\n".join(check)))
                # The redeploy: every file linked from the release but one, which is new.
                second = f"{target}/second"
                subprocess.run(["cp", "-al", tree, second], check=True)
                os.unlink(f"{second}/{changed}")
                Path(f"{second}/{changed}").write_bytes(Path(f"{tree}/{changed}").read_bytes())
                os.unlink(f"{second}/{MANIFEST}")  # new inode, as a delta's MANIFEST is
                Path(f"{second}/{MANIFEST}").write_bytes(Path(f"{tree}/{MANIFEST}").read_bytes())
                check = verify_tree(
                    second,
                    "benchmark redeploy",
                    record=f"{target}/record2",
                    base_record=record,
                    records=target,
                )
                delta.append(_timed("\n".join(check)))
    print(
        f"tree: {len(release.files)} files, {info.bytes / 1e6:.0f} MB;"
        f" archive {release.archive_size / 1e6:.0f} MB; {args.runs} runs in {args.dir};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    print(_line("unpack (tar -xzf), for scale", unpack))
    print(_line("before: sha256sum -c + count", before))
    print(_line("whole archive: names + record", whole))
    print(_line("one-file delta: record + hash new", delta))


if __name__ == "__main__":
    main()
