"""Transfer modes side by side (issue 18): what a first deploy costs the deploying machine
when it pushes the release through every host's SSH session (the default) and when it puts it
once into an S3-compatible store that every host downloads from (`artifacts: {store: s3}`).

Measured per deploy, from outside our process: bytes the deploying machine sent (TCP payload
acknowledged by the hosts' sshd and by the store, as `measure.TcpCounter` counts them), and
its CPU seconds (user + system, from wait4's rusage: the archive build included). Both hold
up on a loaded machine, unlike wall time, which is recorded but is only comparable between
runs on an idle one (re-run then with the same command).

    .venv/bin/python -m benchmarks.transfer --sizes 5,10,20,40
        -> benchmarks/work-transfer/transfer.json and RESULTS-transfer.md there (--results)

The store is moto's standalone server (`tests/integration/s3store.py`, the `moto[server]`
test extra) on a loopback address: it stands in for a real store, and its own CPU is not
counted (it is not the deploying machine). Peak memory is not reported here: the store is a
child of this process, inside the tree `measure.TreeMemory` sums. Hosts use 127.0.2.1..
(`--network`), away from the 127.0.0.x blocks the tests and the main benchmark use; the
fleet is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import tree
from benchmarks.measure import TcpCounter, become_subreaper, run_measured
from benchmarks.projects import DEPLOY_TO, Host, env_name, write_projects
from benchmarks.tools import OUR_BIN, ROOT, Ours, _base_env
from deployer.sandbox.fleet import Fleet, start_fleet

HERE = Path(__file__).resolve().parent
FLEET = "bench-transfer"
PORT = 2222
STORE_PORT = 9000
BUCKET = "releases"
KEYS = {
    "AWS_ACCESS_KEY_ID": "benchmark",
    "AWS_SECRET_ACCESS_KEY": "benchmark-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _say(text: str) -> None:
    print(text, flush=True)


def _store_playbook(deploy_yml: str, endpoint: str) -> str:
    return deploy_yml + (
        "\nartifacts:\n  store: s3\n  bucket: releases\n  prefix: bench/\n"
        f"  endpoint_url: {endpoint}\n  region: us-east-1\n  url_ttl: 120\n"
    )


def _start_store(
    address: str, module: str = "tests.integration.s3store"
) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", module, address, str(STORE_PORT)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((address, STORE_PORT), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"the S3 stand-in did not start on {address}") from None
            time.sleep(0.3)
    import boto3

    client = boto3.client(
        "s3", endpoint_url=f"http://{address}:{STORE_PORT}", region_name="us-east-1", **_keys()
    )
    client.create_bucket(Bucket=BUCKET)
    return server


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
    }


def _live(fleet: Fleet, name: str) -> str:
    code, out = fleet.exec(name, f"readlink {DEPLOY_TO}/current")
    return out.strip().rsplit("/", 1)[-1] if code == 0 else ""


def pin_fleet(fleet: Fleet, server: subprocess.Popen[bytes] | None) -> None:
    """`--pin`: the hosts (and the store) on the last core, so the deploying machine's CPU
    is measured without 40 sandbox hosts sharing its core, as on a real fleet."""
    cpu = str((os.cpu_count() or 2) - 1)
    ids = [host.container_id for host in fleet.hosts]
    subprocess.run(
        ["docker", "update", "--cpuset-cpus", cpu, *ids], check=True, capture_output=True
    )
    if server is not None:
        os.sched_setaffinity(server.pid, {int(cpu)})


def measure_one(
    fleet: Fleet,
    ours_dir: Path,
    hosts: list[Host],
    size: int,
    mode: str,
    store: str,
    work: Path,
    *,
    pin: bool = False,
) -> dict[str, Any]:
    fleet.reset()
    os.sync()
    env = {**_base_env(), **KEYS}
    env["PATH"] = f"{OUR_BIN}:{env['PATH']}"
    argv = [str(OUR_BIN / "invoke"), "deploy", "--env", env_name(size), "--format", "json"]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    if mode == "store":
        argv += ["--playbook", "store"]
    # The store's counter runs beside run_measured's (which counts the hosts' SSH port).
    to_store = TcpCounter([store], STORE_PORT)
    to_store.start()
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            to_store.sample()
            stop.wait(0.05)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    result = run_measured(
        argv,
        cwd=ours_dir,
        env=env,
        addresses=[h.address for h in hosts[:size]],
        port=PORT,
        log_path=work / "logs" / f"{mode}-n{size}.log",
    )
    stop.set()
    thread.join()
    to_store.sample()
    release = Ours.live_release(result.output)
    verified = bool(release) and all(_live(fleet, h.name) == release for h in hosts[:size])
    archive = 0
    for line in result.output.splitlines():
        if '"uploaded to s3://' in line or "bytes uploaded to s3://" in line:
            text = json.loads(line).get("text", "")
            archive = int(text.split()[2])
    ssh_bytes = result.bytes_sent
    store_bytes = sum(to_store.per_host().values())
    return {
        "mode": mode,
        "hosts": size,
        "ok": result.ok,
        "verified": verified,
        "wall_s": round(result.wall, 2),
        "cpu_s": round(result.cpu_tool, 2),
        "ssh_bytes": ssh_bytes,
        "store_bytes": store_bytes,
        "sent_bytes": ssh_bytes + store_bytes,
        "archive_bytes": archive or None,
    }


def _runs(row: dict[str, Any]) -> str:
    runs = row.get("cpu_runs", [])
    return "(" + ", ".join(f"{c:.2f}" for c in runs) + ") " if len(runs) > 1 else ""


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median controller CPU, with every run's CPU beside it."""
    ordered = sorted(runs, key=lambda r: r["cpu_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["cpu_runs"] = [r["cpu_s"] for r in runs]
    row["ok"] = all(r["ok"] for r in runs)
    row["verified"] = all(r["verified"] for r in runs)
    return row


def _machine_load(record: dict[str, Any]) -> str:
    """The load at the start, and whether the wall column compares with other runs: only
    from an idle machine (1-minute load under half the cores)."""
    load, cores = record["load"], record["cores"]
    said = f"Machine load: load average {load:.1f} on {cores} cores. "
    if load < 0.5 * cores:
        return said + "The machine was idle at the start: wall times compare with other idle runs."
    return said + (
        "**Wall times are from a loaded machine and are not comparable**: re-run on an idle"
        " one for them; bytes and CPU seconds hold."
    )


def render(record: dict[str, Any]) -> str:
    rows = record["rows"]
    archive = next((r["archive_bytes"] for r in rows if r["archive_bytes"]), None)
    archive_mb = f"{archive / 1e6:.1f} MB" if archive else "size unknown"
    out = [
        "# Transfer modes: SSH push vs artifact store (issue 18)",
        "",
        f"Produced by `{record['command']}` ({record['started']}). One first deploy per mode and"
        f" size of the benchmark release ({record['tree']['files']} files,"
        f" {record['tree']['bytes'] / 1e6:.1f} MB; archive"
        f" {archive_mb}) with `serial: 25%`, `parallel: 40`. Sent = TCP payload the"
        " deploying machine's connections had acknowledged (hosts' sshd + the store); CPU ="
        " user + system seconds of `invoke deploy` and its children (the archive build"
        " included). The store is moto's server on loopback, standing in for S3.",
        "",
        _machine_load(record),
        "",
        f"Runs per row: {record.get('runs', 1)} (the row is the run with the median CPU; every"
        " run's CPU is in brackets)."
        + (
            " **Pinned** (`--pin`): the deploy ran on core 0, the hosts and the store on the"
            " last core, so the hosts' work does not share the deploying machine's core."
            if record.get("pin")
            else ""
        ),
        "",
        "| hosts | mode | sent (MB) | sent ÷ archive | controller CPU (s) | wall (s) | verified |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r['sent_bytes'] / archive:.2f}×" if archive else "?"
        out.append(
            f"| {r['hosts']} | {r['mode']} | {r['sent_bytes'] / 1e6:.1f} | {ratio} |"
            f" {r['cpu_s']:.2f} {_runs(r)}| {r['wall_s']:.1f} |"
            f" {'yes' if r['verified'] else 'NO'} |"
        )
    out += ["", *growth(rows)]
    return "\n".join(out) + "\n"


def growth(rows: list[dict[str, Any]]) -> list[str]:
    """Per mode: the controller CPU of the largest fleet against the smallest, and what each
    added host cost (the target for the store: within 20%)."""
    lines = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["hosts"])
        small, large = mine[0], mine[-1]
        if large["hosts"] == small["hosts"]:
            continue
        per_host = (large["cpu_s"] - small["cpu_s"]) / (large["hosts"] - small["hosts"])
        lines.append(
            f"- {mode}: controller CPU {large['cpu_s'] / small['cpu_s'] - 1:+.0%} from"
            f" {small['hosts']} to {large['hosts']} hosts, {per_host * 1000:.1f} ms per added"
            " host."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer")
    parser.add_argument("--sizes", default="5,10,20,40")
    parser.add_argument("--modes", default="ssh,store")
    parser.add_argument("--network", default="127.0.2", help="first three octets (loopback)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=HERE / "work-transfer")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--runs", type=int, default=1, help="runs per size and mode (median)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the deploy on core 0, the hosts and the store on the last core",
    )
    args = parser.parse_args(argv)
    if not args.network.startswith("127."):
        parser.error("--network must be inside 127.0.0.0/8")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    modes = args.modes.split(",")
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    hosts = [Host(f"bench{i:02d}", f"{args.network}.{i}") for i in range(1, max(sizes) + 1)]
    store = f"{args.network}.250"
    (work / "ours").mkdir(exist_ok=True)
    info = tree.generate(work / "ours" / "app", args.seed)
    record: dict[str, Any] = {
        "command": "python -m benchmarks.transfer " + " ".join(argv or sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "tree": {"files": info.files, "bytes": info.bytes},
        "load": os.getloadavg()[0],
        "cores": os.cpu_count() or 1,
        "rows": [],
        "runs": args.runs,
        "pin": args.pin,
    }
    _say(f"starting {len(hosts)} hosts on {hosts[0].address}.. and the store on {store}")
    fleet_name = f"{FLEET}-{args.network.replace('.', '-')}"
    addresses = [(h.name, h.address) for h in hosts]
    fleet = start_fleet(
        fleet_name, addresses, work / "fleet", port=PORT, timeout=300, tmpfs=["/srv"]
    )
    server = None
    try:
        server = _start_store(store)
        if args.pin:
            pin_fleet(fleet, server)
        projects = write_projects(work, hosts, sizes, fleet.key_path, fleet.known_hosts_path)
        deploy_yml = (projects.ours / "playbooks" / "deploy.yml").read_text()
        (projects.ours / "playbooks" / "store.yml").write_text(
            _store_playbook(deploy_yml, f"http://{store}:{STORE_PORT}")
        )
        for size in sizes:
            for mode in modes:
                runs = []
                for _ in range(args.runs):
                    one = measure_one(
                        fleet, projects.ours, hosts, size, mode, store, work, pin=args.pin
                    )
                    _say(json.dumps(one))
                    runs.append(one)
                row = median_row(runs)
                record["rows"].append(row)
                (work / "transfer.json").write_text(json.dumps(record, indent=1))
        text = render(record)
        results = args.results or work / "RESULTS-transfer.md"
        results.write_text(text)
        _say("\n" + text)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        fleet.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
