"""What verifying a staged release costs a host (issue 14): the benchmark's release tree (seed
2026, about 2,900 files and 44 MB) is built into an archive, unpacked as a host's stage does,
then checked with the very lines `scripts.stage` runs (`verify_tree`: `sha256sum -c` against
the MANIFEST from the archive, plus the regular-file count). Times the unpack for scale.

    .venv/bin/python -m benchmarks.verify_cost [--runs 5] [--dir /dev/shm]

The same coreutils on the same CPU as the sandbox hosts; `--dir /dev/shm` mirrors the
benchmark hosts' tmpfs `/srv`. Runs on this machine only: no host, no network.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import tree as bench_tree
from deployer.release import build_release
from deployer.remote.scripts.stage import verify_tree


def _timed(script: str) -> float:
    started = time.monotonic()
    subprocess.run(["bash", "-c", "set -eu\n" + script], check=True)
    return time.monotonic() - started


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
        unpack, verify = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(dir=args.dir) as target:
                tree = f"{target}/tree"
                unpack.append(
                    _timed(f"mkdir {tree} && tar -xzf {release.archive} -C {tree} --no-same-owner")
                )
                verify.append(_timed("\n".join(verify_tree(tree, "benchmark release"))))
    print(
        f"tree: {len(release.files)} files, {info.bytes / 1e6:.0f} MB;"
        f" archive {release.archive_size / 1e6:.0f} MB; {args.runs} runs in {args.dir}"
    )
    print(f"unpack (tar -xzf):            median {statistics.median(unpack):.3f} s")
    print(
        f"verify (sha256sum -c + count): median {statistics.median(verify):.3f} s"
        f" (min {min(verify):.3f}, max {max(verify):.3f})"
    )


if __name__ == "__main__":
    main()
