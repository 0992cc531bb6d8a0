"""Bulk streams through paramiko or through the system OpenSSH client (issue 18): the stage
stream of one release, sent to N hosts at once, by our transport and by `ssh` subprocesses.

Both variants send the same bytes into the same remote script: the stage step's own
(`scripts.stage`: `head -c | tee | sha256sum` beside `tar -xzf - -C <staging>`, then
`sha256sum -c` of the MANIFEST and the rename into `/srv/x/releases/<id>`), built by the same
code, run through `bash -c` as one exec session. Only the transport differs:

- **paramiko**: `deployer.remote.ssh.SSHTransport.run`, the very call the stage step makes
  (its 256 KiB reads, `sendall`, strict host keys), one thread per host as `Runner.each`.
- **openssh**: one `ssh -M -N` master per host (ControlMaster, socket in a private temp dir;
  `StrictHostKeyChecking=yes` against the fleet's known_hosts, `-i <key> IdentitiesOnly=yes
  BatchMode=yes`, cipher defaults), then per host one `ssh -S <socket> ... 'bash -c <script>'`
  whose stdin is a pipe that a Python thread fills from the archive in the same 256 KiB
  reads (what a product transport would do: a stage stream has several segments).

Connections are opened before the stream is timed, in both (the deploy opens them ahead
too); their cost is reported apart. Controller CPU = user + system seconds of this process
(paramiko's threads) plus its children (the `ssh` clients, reaped) plus the masters' own
(from /proc, while they live). Host CPU = the hosts' containers' cgroups. Each round runs
the variants in turn (A B, B A, ...) with the hosts emptied between runs; with `--remote
discard` the remote side is only `cat > /dev/null`, the transport's ceiling. The two clients
are in bulk_clients.py.

    .venv/bin/python -m benchmarks.bulk_stream --network 127.0.4 --sizes 5,20 --rounds 3
        -> benchmarks/work/bulk-stream/bulk_stream.json (and a table on stdout)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import tree
from benchmarks.bulk_clients import OpenSSH, Paramiko, Variant
from benchmarks.measure import container_cpu_seconds
from deployer.config.model import Host
from deployer.release import Release, build_release
from deployer.remote import scripts
from deployer.remote.shell import Script, Stdin
from deployer.sandbox.fleet import Fleet, start_fleet

HERE = Path(__file__).resolve().parent
FLEET = "bench-bulk"
PORT = 2222
ROOT = "/srv/x"


def _say(text: str) -> None:
    print(text, flush=True)


def _hosts(fleet: Fleet) -> list[Host]:
    return [
        Host(
            name=h.name,
            address=h.address,
            port=h.port,
            user="deploy",
            groups=("all",),
            vars={
                "ansible_ssh_private_key_file": str(fleet.key_path),
                "ssh_known_hosts_file": str(fleet.known_hosts_path),
            },
        )
        for h in fleet.hosts
    ]


def stage_script(release: Release, run_id: str, remote: str) -> Script:
    """The stage step's script (no templates, no shared dirs), or a sink for `discard`."""
    if remote == "discard":
        return Script(step="stage", lines=("cat > /dev/null",), stdin=Stdin((release.archive,)))
    return scripts.stage(
        scripts.Layout(ROOT),
        release.id,
        run_id,
        archive=release.archive,
        archive_size=release.archive_size,
        archive_sha256=release.archive_sha256,
        host_files=b"",
        shared_dirs=(),
        shared_files=(),
    )


def _cpu_split() -> tuple[float, float]:
    """CPU seconds of this process (all its threads) and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _cpu_self_children() -> float:
    return sum(_cpu_split())


# ------------------------------------------------------------------ one run


def _prepare(fleet: Fleet, size: int) -> None:
    fleet.reset()
    for host in fleet.hosts[:size]:
        code, out = fleet.exec(host, f"install -d -o deploy -g deploy {ROOT} {ROOT}/releases")
        if code != 0:
            raise RuntimeError(f"{host.name}: {out}")
    os.sync()


def _check(fleet: Fleet, hosts: list[Host], release: Release, remote: str) -> list[str]:
    """What the hosts hold, checked from outside SSH: every host's release has the archive's
    files plus the MANIFEST. Returns the hosts that do not, with what was seen."""
    if remote == "discard":
        return []
    want = str(len(release.files) + 1)
    wrong = []
    for host in hosts:
        code, out = fleet.exec(host.name, f"find {ROOT}/releases/{release.id} -type f | wc -l")
        if code != 0 or out.strip() != want:
            wrong.append(f"{host.name}: exit {code}, {out.strip()[-200:]!r} (want {want} files)")
    return wrong


def measure_one(
    make: Callable[[list[Host]], Variant],
    fleet: Fleet,
    hosts: list[Host],
    release: Release,
    remote: str,
    run_id: str,
) -> dict[str, Any]:
    _prepare(fleet, len(hosts))
    containers = [h.container_id for h in fleet.hosts[: len(hosts)]]
    variant = make(hosts)
    script = stage_script(release, run_id, remote)
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        try:
            cpu0 = _cpu_self_children()
            started = time.monotonic()
            variant.connect(pool)
            connect_wall = time.monotonic() - started
            connect_cpu = _cpu_self_children() + variant.extra_cpu() - cpu0
            load = os.getloadavg()[0]
            hosts_cpu0 = container_cpu_seconds(containers)
            own0, kids0 = _cpu_split()
            masters0 = variant.extra_cpu()
            started = time.monotonic()
            results = list(pool.map(lambda h: variant.send(h, script), hosts))
            wall = time.monotonic() - started
            own1, kids1 = _cpu_split()
            masters = variant.extra_cpu() - masters0
            cpu = own1 - own0 + kids1 - kids0 + masters
            hosts_cpu1 = container_cpu_seconds(containers)
            load_after = os.getloadavg()[0]
        finally:
            variant.close()
    failed = [
        (h.name, code, out[-300:])
        for h, (code, out) in zip(hosts, results, strict=True)
        if code != 0 or (remote == "stage" and f"@@staged {release.id}" not in out)
    ]
    wrong = [] if failed else _check(fleet, hosts, release, remote)
    mb = release.archive_size * len(hosts) / 1e6
    return {
        "variant": variant.name,
        "hosts": len(hosts),
        "remote": remote,
        "cipher": variant.cipher,
        "ok": not failed,
        "failed": failed,
        "verified": not failed and not wrong,
        "check": wrong,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_mb": round(cpu * 1000 / mb, 2),
        # where it went: this process (paramiko's threads, or the pipe feeders), the `ssh`
        # session clients it reaped, the ControlMaster processes
        "cpu_split_s": [round(own1 - own0, 2), round(kids1 - kids0, 2), round(masters, 2)],
        "hosts_cpu_s": (
            round(hosts_cpu1 - hosts_cpu0, 2)
            if hosts_cpu0 is not None and hosts_cpu1 is not None
            else None
        ),
        "connect_wall_s": round(connect_wall, 2),
        "connect_cpu_s": round(connect_cpu, 2),
        "load": round((load + load_after) / 2, 1),
        "mb": round(mb, 1),
    }


def render(record: dict[str, Any]) -> str:
    out = [
        f"Produced by `{record['command']}` ({record['started']}): archive"
        f" {record['archive_bytes'] / 1e6:.1f} MB ({record['tree']['files']} files,"
        f" {record['tree']['bytes'] / 1e6:.1f} MB unpacked), {record['rounds']} rounds per size,"
        " variants alternated. Medians; (min-max).",
        "",
        "| remote | hosts | transport | wall (s) | controller CPU (s) | CPU ms/MB |"
        " connect wall / CPU (s) | total CPU (s) | hosts' CPU (s) | load avg | verified |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    keys = sorted(
        {(r["remote"], r["hosts"], r["variant"]) for r in record["rows"]},
        key=lambda k: (k[0] != "stage", k[1], k[2] != "paramiko"),
    )
    for remote, hosts, variant in keys:
        rows = [
            r
            for r in record["rows"]
            if (r["remote"], r["hosts"], r["variant"]) == (remote, hosts, variant)
        ]

        def med(field: str, rows: list[dict[str, Any]] = rows) -> str:
            values = [r[field] for r in rows if r[field] is not None]
            if not values:
                return "?"
            return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

        def med1(field: str, rows: list[dict[str, Any]] = rows) -> str:
            values = [r[field] for r in rows if r[field] is not None]
            return f"{statistics.median(values):.2f}" if values else "?"

        loads = [r["load"] for r in rows]
        out.append(
            f"| {remote} | {hosts} | {variant} | {med('wall_s')} | {med('cpu_s')} |"
            f" {med1('cpu_ms_per_mb')} | {med1('connect_wall_s')} / {med1('connect_cpu_s')} |"
            f" {statistics.median(r['cpu_s'] + r['connect_cpu_s'] for r in rows):.2f} |"
            f" {med1('hosts_cpu_s')} |"
            f" {min(loads):.0f}-{max(loads):.0f} |"
            f" {'yes' if all(r['verified'] for r in rows) else 'NO'} |"
        )
    ciphers = {r["variant"]: r["cipher"] for r in record["rows"]}
    out += ["", "Negotiated: " + "; ".join(f"{k}: {v}" for k, v in sorted(ciphers.items()))]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bulk_stream")
    parser.add_argument("--sizes", default="5,20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--remote", default="stage", help="stage,discard (comma-separated)")
    parser.add_argument("--network", default="127.0.4", help="first three octets (loopback)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "bulk-stream")
    args = parser.parse_args(argv)
    if not args.network.startswith("127."):
        parser.error("--network must be inside 127.0.0.0/8")
    if shutil.which("ssh") is None:
        parser.error("needs the OpenSSH client (`ssh`) on PATH")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    remotes = args.remote.split(",")
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    info = tree.generate(work / "tree", args.seed)
    release = build_release(source_dir=info.root, work_dir=work / "build")
    _say(f"release {release.id}: {release.archive_size / 1e6:.1f} MB archive")
    record: dict[str, Any] = {
        "command": "python -m benchmarks.bulk_stream " + " ".join(argv or sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "tree": {"files": info.files, "bytes": info.bytes},
        "archive_bytes": release.archive_size,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "rows": [],
    }
    addresses = [(f"bulk{i:02d}", f"{args.network}.{i}") for i in range(1, max(sizes) + 1)]
    fleet_name = f"{FLEET}-{args.network.replace('.', '-')}"
    _say(f"starting {len(addresses)} hosts on {addresses[0][1]}..")
    fleet = start_fleet(
        fleet_name, addresses, work / "fleet", port=PORT, timeout=300, tmpfs=["/srv"]
    )
    makers: dict[str, Callable[[list[Host]], Variant]] = {
        "paramiko": Paramiko,
        "openssh": lambda hs: OpenSSH(hs, fleet.key_path, fleet.known_hosts_path),
    }
    try:
        all_hosts = _hosts(fleet)
        n = 0
        for remote in remotes:
            for size in sizes:
                for round_ in range(args.rounds):
                    order = ["paramiko", "openssh"]
                    if round_ % 2:
                        order.reverse()  # A B, B A, A B: neither always goes first
                    for name in order:
                        n += 1
                        row = measure_one(
                            makers[name], fleet, all_hosts[:size], release, remote, f"{n:012x}"
                        )
                        record["rows"].append(row)
                        _say(json.dumps(row))
                        (work / "bulk_stream.json").write_text(json.dumps(record, indent=1))
        text = render(record)
        (work / "RESULTS-bulk-stream.md").write_text(text)
        _say("\n" + text)
    finally:
        fleet.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
