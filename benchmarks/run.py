"""The benchmark: our deployer, ansible-core and pyinfra doing the same deploy on the same
sandbox fleet, side by side in one run. Usage (from the repository root):

    bash benchmarks/run            # full: 5, 10, 20, 40 hosts, 3 runs each -> benchmarks/RESULTS.md
    bash benchmarks/run --quick    # 5 and 20 hosts, 1 run -> benchmarks/work/RESULTS-quick.md

Fleet hosts use 127.0.1.1.. (`--network`; never addresses the tests use) and are removed at the end,
also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker

from benchmarks import report, tree
from benchmarks.measure import become_subreaper, run_measured
from benchmarks.projects import DEPLOY_TO, Host, Projects, write_projects
from benchmarks.sessions import fleet_counts
from benchmarks.tools import (
    PEERS_BIN,
    SCENARIOS,
    Ansible,
    AnsibleSync,
    Ours,
    Pyinfra,
    PyinfraSync,
    events,
    remove,
    versions,
)
from deployer.sandbox.fleet import Fleet, start_fleet

HERE = Path(__file__).resolve().parent
FLEET = "benchmark"
PORT = 2222
STREAM_MB = 40


def _say(text: str) -> None:
    print(text, flush=True)


def _machine() -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    docker_version = docker.from_env().version().get("Version", "?")
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": _os_name(),
        "docker": docker_version,
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


# ------------------------------------------------------------------ transfer efficiency


def _ssh_argv(fleet: Fleet, address: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(fleet.key_path),
        "-o",
        f"UserKnownHostsFile={fleet.known_hosts_path}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        str(PORT),
        f"deploy@{address}",
    ]


# Timed on the host (containers share this machine's clock): session start to end of input.
_TIMED_CAT = "date +%s.%N; cat > {sink}; date +%s.%N; rm -f /srv/stream.bin"
TO_NULL, TO_FILE = "/dev/null", "/srv/stream.bin"


def _host_seconds(output: bytes) -> float:
    first, last = output.decode().split()[:2]
    return float(last) - float(first)


def _openssh_stream(fleet: Fleet, address: str, path: Path, sink: str = TO_NULL) -> float:
    with open(path, "rb") as fh:
        proc = subprocess.run(
            [*_ssh_argv(fleet, address), _TIMED_CAT.format(sink=sink)],
            stdin=fh,
            capture_output=True,
            check=True,
        )
    return _host_seconds(proc.stdout)


def _paramiko_stream(fleet: Fleet, host_name: str, path: Path, sink: str = TO_NULL) -> float:
    client = fleet.ssh_client(host_name)
    try:
        transport = client.get_transport()
        assert transport is not None
        chan = transport.open_session()
        chan.exec_command(_TIMED_CAT.format(sink=sink))
        with open(path, "rb") as fh:
            while chunk := fh.read(256 * 1024):  # as deployer/remote/ssh.py sends
                chan.sendall(chunk)
        chan.shutdown_write()
        out = b""
        while data := chan.recv(4096):
            out += data
        chan.recv_exit_status()
        return _host_seconds(out)
    finally:
        client.close()


def _upload_figures(output: str, started_at: float, wall: float) -> dict[str, float]:
    """From our JSON events: per-host and aggregate upload throughput and phase times."""
    evs = events(output)
    stage_start: dict[str, float] = {}
    done: dict[str, tuple[float, int]] = {}
    marks: dict[str, float] = {}
    for e in evs:
        kind, at = e.get("event"), float(e.get("at", 0))
        if kind == "RunStarted":
            marks["run_started"] = at
        elif kind == "StepStarted" and e.get("step") == "stage":
            stage_start[str(e["host"])] = at
        elif kind == "StepFinished" and e.get("step") == "stage":
            marks["stage_done"] = max(marks.get("stage_done", 0.0), at)
        elif kind == "UploadProgress" and e.get("sent") == e.get("total"):
            done[str(e["host"])] = (at, int(str(e["total"])))
        elif kind == "BatchStarted" and "rollout_start" not in marks:
            marks["rollout_start"] = at
        elif kind == "BatchFinished":
            marks["rollout_done"] = at
        elif kind == "RunFinished":
            marks["run_finished"] = at
    figures: dict[str, float] = {}
    rates = [
        total / (at - stage_start[h])
        for h, (at, total) in done.items()
        if h in stage_start and at > stage_start[h]
    ]
    if rates:
        figures["upload_mb_s_per_host"] = statistics.median(rates) / 1e6
        span = max(at for at, _ in done.values()) - min(stage_start.values())
        figures["upload_mb_s_aggregate"] = sum(t for _, t in done.values()) / span / 1e6
        figures["archive_bytes"] = next(iter(done.values()))[1]
    if "run_started" in marks:
        figures["t_build"] = marks["run_started"] - started_at  # start, load, build, plan
    if "run_finished" in marks:
        figures["t_exit"] = started_at + wall - marks["run_finished"]
    if "run_started" in marks and stage_start:
        figures["t_prepare"] = min(stage_start.values()) - marks["run_started"]
    if stage_start and "stage_done" in marks:
        figures["t_stage"] = marks["stage_done"] - min(stage_start.values())
    if "rollout_start" in marks and "rollout_done" in marks:
        figures["t_rollout"] = marks["rollout_done"] - marks["rollout_start"]
    if "rollout_done" in marks and "run_finished" in marks:
        figures["t_finish"] = marks["run_finished"] - marks["rollout_done"]
    return {k: round(v, 3) for k, v in figures.items()}


def transfer_efficiency(
    fleet: Fleet, work: Path, ours: Ours, hosts: list[Host], sizes: list[int], runs: int
) -> dict[str, Any]:
    path = work / f"stream-{STREAM_MB}MB.bin"
    if not path.exists() or path.stat().st_size != STREAM_MB * 2**20:
        path.write_bytes(random.Random(STREAM_MB).randbytes(STREAM_MB * 2**20))
    size = path.stat().st_size
    host = fleet.hosts[0]
    result: dict[str, Any] = {"file_mb": size / 1e6, "host": host.name}
    _reset(fleet)  # /srv belongs to deploy again
    for sink, suffix in ((TO_NULL, ""), (TO_FILE, "_file")):
        result["openssh" + suffix + "_mb_s"] = [
            size / _openssh_stream(fleet, host.address, path, sink) / 1e6 for _ in range(3)
        ]
        result["paramiko" + suffix + "_mb_s"] = [
            size / _paramiko_stream(fleet, host.name, path, sink) / 1e6 for _ in range(3)
        ]
    openssh, paramiko_rates = result["openssh_mb_s"], result["paramiko_mb_s"]
    _say(
        f"  OpenSSH `cat > /dev/null` stream to {host.name}: "
        f"{statistics.median(openssh):.0f} MB/s; paramiko, same stream: "
        f"{statistics.median(paramiko_rates):.0f} MB/s"
    )

    ours_rates = []
    for i in range(runs):
        _reset(fleet)
        inv = ours.invocation("first", sizes[0], i)
        inv.argv += ["--limit", host.name]
        res = run_measured(
            inv.argv,
            cwd=inv.cwd,
            env=inv.env,
            addresses=[host.address],
            port=PORT,
            log_path=work / "logs" / f"stream-ours-{i}.log",
        )
        if not res.ok:
            _say(f"  our single-host deploy failed (exit {res.rc}):\n{res.output[-3000:]}")
            continue
        figures = _upload_figures(res.output, res.started_at, res.wall)
        if "upload_mb_s_per_host" in figures:
            ours_rates.append(figures["upload_mb_s_per_host"])
    result["ours_mb_s"] = ours_rates
    if ours_rates:
        _say(f"  our upload (stage step) to {host.name}: {statistics.median(ours_rates):.0f} MB/s")

    # Every host at once: the most a fleet-wide upload could get through on this machine.
    targets = hosts[: max(sizes)]
    wall = _openssh_everywhere(fleet, {h.address: "cat > /dev/null" for h in targets}, path)
    result["openssh_parallel_hosts"] = len(targets)
    result["openssh_parallel_mb_s"] = size * len(targets) / wall / 1e6
    _say(
        f"  OpenSSH streams to {len(targets)} hosts at once: "
        f"{result['openssh_parallel_mb_s']:.0f} MB/s aggregate"
    )
    return result


# ------------------------------------------------------------------ the hosts' own floor


def _openssh_everywhere(fleet: Fleet, commands: dict[str, str], stdin: Path | None = None) -> float:
    """Run one command per host address over OpenSSH, all at once (each fed `stdin` when
    given); the wall time until the last one ends. A command that fails raises."""
    started = time.monotonic()
    with contextlib.ExitStack() as files:
        procs = [
            subprocess.Popen(
                [*_ssh_argv(fleet, address), command],
                stdin=files.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            for address, command in commands.items()
        ]
        codes = [proc.wait() for proc in procs]
    wall = time.monotonic() - started
    if any(codes):
        raise RuntimeError(f"OpenSSH commands failed on some host: exit codes {codes}")
    return wall


def pack_floor_archive(tree_dir: Path, archive: Path) -> None:
    """The release as a plain tar.gz at gzip level 1 (the level every tool packs at), for
    unpack_floor."""
    subprocess.run(
        ["tar", "--use-compress-program=gzip -1", "-cf", str(archive), "-C", str(tree_dir.parent),
         tree_dir.name],
        check=True,
    )  # fmt: skip


def unpack_floor(fleet: Fleet, archive: Path, hosts: list[Host]) -> float:
    """Wall time of the work every tool's first deploy makes the hosts do, with no tool at
    all: the archive streamed by OpenSSH into `tar -xzf -` on every host at once. On this
    machine the hosts share its cores, so no tool can deploy to these hosts faster than this;
    on a real fleet each host would do its part on its own CPU."""
    _reset(fleet)
    unpack = "mkdir -p /srv/floor && tar -xzf - -C /srv/floor"
    return _openssh_everywhere(fleet, {h.address: unpack for h in hosts}, archive)


def restart_floor(fleet: Fleet, hosts: list[Host]) -> float:
    """Wall time of the hosts' own part of a rollback, with no tool: the live release's
    `bin/restart` and one health request, over OpenSSH on every host at once."""
    return _openssh_everywhere(
        fleet,
        {
            h.address: f"{DEPLOY_TO}/current/bin/restart >/dev/null"
            f" && curl -fsS -o /dev/null http://{h.address}:8000/health"
            for h in hosts
        },
    )


# ------------------------------------------------------------------ the scenarios


def _reset(fleet: Fleet) -> None:
    """Fresh hosts, and the deleted files' writeback done before the next run starts."""
    fleet.reset()
    os.sync()


def _other_containers(client: docker.DockerClient, ours: Iterable[str]) -> int:
    """Running containers that are not this benchmark's: someone else's load on the machine."""
    mine = set(ours)
    return sum(1 for c in client.containers.list() if c.id not in mine)


def _live(fleet: Fleet, host: Host) -> str:
    code, out = fleet.exec(host.name, f"readlink {DEPLOY_TO}/current")
    return out.strip().rsplit("/", 1)[-1] if code == 0 else ""


def run_chain(
    tool: Ours | Ansible | Pyinfra,
    fleet: Fleet,
    projects: Projects,
    hosts: list[Host],
    size: int,
    iteration: int,
    seq: int,
    work: Path,
    client: docker.DockerClient,
) -> list[dict[str, Any]]:
    """Fresh hosts, then first deploy, redeploy with one file changed, rollback: measured."""
    subset = hosts[:size]
    containers = {h.name: h.container_id for h in fleet.hosts}
    _reset(fleet)
    tree.set_change(projects.tree, 0)
    rows: list[dict[str, Any]] = []
    deployed: list[str] = []
    for scenario in SCENARIOS:
        if scenario == "redeploy":
            tree.set_change(projects.tree, seq)
        inv = tool.invocation(scenario, size, seq)
        load_before = round(os.getloadavg()[0], 2)
        others = _other_containers(client, containers.values())
        since = time.time()
        res = run_measured(
            inv.argv,
            cwd=inv.cwd,
            env=inv.env,
            addresses=[h.address for h in subset],
            port=PORT,
            log_path=work / "logs" / f"n{size}-{tool.name}-{iteration}-{scenario}.log",
            before_close=inv.close,
            containers=[containers[h.name] for h in subset],
        )
        remove(inv.cleanup)
        time.sleep(0.3)  # let the last log lines reach docker
        counts = fleet_counts(client, [(h.name, containers[h.name]) for h in subset], since)
        if tool.name == "ours":
            expected = (
                deployed[-2]
                if scenario == "rollback" and len(deployed) >= 2
                else (Ours.live_release(res.output))
            )
        else:
            expected = inv.release
        if scenario != "rollback" and expected:
            deployed.append(expected)
        live = {_live(fleet, subset[0]), _live(fleet, subset[-1])}
        verified = res.ok and expected is not None and live == {expected}
        sessions = [counts[h.name]["sessions"] for h in subset]
        row: dict[str, Any] = {
            "tool": tool.name,
            "size": size,
            "iteration": iteration,
            "scenario": scenario,
            "ok": res.ok,
            "rc": res.rc,
            "verified": verified,
            "wall": round(res.wall, 3),
            "bytes_sent": res.bytes_sent,
            "bytes_per_host_max": max(res.bytes_per_host.values()),
            "tcp_connections": res.tcp_connections,
            "sessions_per_host_mean": statistics.mean(sessions),
            "sessions_per_host_max": max(sessions),
            "sftp_per_host_mean": statistics.mean(counts[h.name]["subsystem:sftp"] for h in subset),
            "connections_per_host_mean": statistics.mean(
                counts[h.name]["connections"] for h in subset
            ),
            "peak_rss": res.peak_rss,
            "peak_pss": res.peak_pss,
            "peak_processes": res.peak_processes,
            "cpu_tool": round(res.cpu_tool, 2),
            "cpu_hosts": None if res.cpu_hosts is None else round(res.cpu_hosts, 2),
            "load_before": load_before,
            "other_containers": others,
            "release": expected,
        }
        if tool.name == "ours":
            row.update(_upload_figures(res.output, res.started_at, res.wall))
        rows.append(row)
        _say(
            f"  {tool.name:8} n={size:<3} run {iteration + 1} {scenario:9}"
            f" {'ok ' if verified else 'FAILED'} {res.wall:7.2f}s"
            f"  sessions/host {row['sessions_per_host_mean']:5.1f}"
            f"  sent {res.bytes_sent / 1e6:8.2f} MB"
            f"  peak {res.peak_rss / 2**20:6.0f} MB RSS ({res.peak_pss / 2**20:.0f} PSS)"
            f"  CPU {res.cpu_tool:5.1f}s tool, {res.cpu_hosts or 0:5.1f}s hosts"
            + (f"  [{others} other containers running]" if others else "")
        )
        if not verified:
            _say(
                f"    exit {res.rc}, expected {expected}, live {sorted(live)};"
                f" log: {work / 'logs'}\n" + _indent(res.output[-2500:])
            )
            break
    tree.set_change(projects.tree, 0)
    return rows


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 5 and 20, one run each (for development)"
    )
    parser.add_argument("--sizes", help="comma-separated fleet sizes (default 5,10,20,40)")
    parser.add_argument("--runs", type=int, help="runs per tool and size (default 3)")
    parser.add_argument("--tools", default="ours,ansible,pyinfra")
    parser.add_argument("--seed", type=int, default=2026, help="release tree seed")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument(
        "--network",
        default="127.0.1",
        help="first three octets of the hosts' loopback addresses (default 127.0.1: .1, .2, ...)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="markdown report (default benchmarks/RESULTS.md; --quick: work/RESULTS-quick.md)",
    )
    args = parser.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([5, 20] if args.quick else [5, 10, 20, 40])
    )
    runs = args.runs or (1 if args.quick else 3)
    work: Path = args.work.resolve()
    results_path = args.results or (
        work / "RESULTS-quick.md" if args.quick else HERE / "RESULTS.md"
    )
    wanted_tools = args.tools.split(",")
    if not args.network.startswith("127.") or args.network.count(".") != 2:
        parser.error("--network must be three octets inside 127.0.0.0/8, e.g. 127.0.1")
    fleet_name = f"{FLEET}-{args.network.replace('.', '-')}"
    if not (PEERS_BIN / "ansible-playbook").exists() or not (PEERS_BIN / "pyinfra").exists():
        _say(f"the peers' environment is missing ({PEERS_BIN.parent}): run `bash benchmarks/run`")
        return 2

    command = "bash benchmarks/run" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    become_subreaper()

    hosts = [Host(f"bench{i:02d}", f"{args.network}.{i}") for i in range(1, max(sizes) + 1)]
    started = time.monotonic()
    (work / "ours").mkdir(exist_ok=True)
    info = tree.generate(work / "ours" / "app", args.seed)
    _say(
        f"release tree: {info.files} files, {info.bytes / 1e6:.1f} MB (seed {args.seed})"
        f" in {time.monotonic() - started:.1f}s"
    )

    record: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "sizes": sizes,
        "runs": runs,
        "machine": _machine(),
        "versions": versions(),
        "tree": {
            "files": info.files,
            "bytes": info.bytes,
            "seed": args.seed,
            "changed_file": tree.CHANGED_FILE,
        },
        "rows": [],
    }
    _say(f"starting {len(hosts)} sandbox hosts on {hosts[0].address}-{hosts[-1].address} ...")
    t0 = time.monotonic()
    # /srv, where every tool deploys, is a tmpfs in each host: this machine's root filesystem
    # is ext4 without a journal, where creating files within ~30 s of deleting many (the reset
    # before every run) scans the recently freed inodes one by one, which made whichever tool
    # unpacked soonest after a reset up to 3x slower. A real host has its own journaled disk.
    fleet = start_fleet(
        fleet_name,
        [(h.name, h.address) for h in hosts],
        work / "fleet",
        port=PORT,
        timeout=300,
        tmpfs=["/srv"],
    )
    try:
        record["fleet_start_s"] = round(time.monotonic() - t0, 2)
        _say(f"fleet up in {record['fleet_start_s']}s (not counted in any figure)")
        sshd = fleet.exec(fleet.hosts[0].name, "ssh -V 2>&1")[1].strip()
        record["versions"]["OpenSSH server (hosts)"] = sshd
        hosts = [Host(h.name, h.address) for h in fleet.hosts]
        projects = write_projects(work, hosts, sizes, fleet.key_path, fleet.known_hosts_path)
        all_tools: dict[str, Ours | Ansible | Pyinfra] = {
            "ours": Ours(projects),
            "ansible": Ansible(projects, Path(f"/tmp/bench-cp-{os.getpid()}")),
            "pyinfra": Pyinfra(projects),
            # The peers' own changed-files-only mechanisms, as extra rows (issue 18).
            "pyinfra-sync": PyinfraSync(projects),
            "ansible-sync": AnsibleSync(projects, Path(f"/tmp/bench-cp-{os.getpid()}")),
        }
        tools = [all_tools[t] for t in wanted_tools]
        client = docker.from_env()

        _say("transfer efficiency:")
        ours = all_tools["ours"]
        assert isinstance(ours, Ours)
        record["stream"] = transfer_efficiency(fleet, work, ours, hosts, sizes, runs)

        floor_archive = work / "floor.tar.gz"
        pack_floor_archive(projects.tree, floor_archive)
        record["floor"], record["restart_floor"] = {}, {}
        seq = 0
        for size in sizes:
            floors = record["floor"][str(size)] = []
            for _ in range(runs):
                floors.append(round(unpack_floor(fleet, floor_archive, hosts[:size]), 3))
            _say(f"  floor n={size:<3} OpenSSH + tar -xzf on every host: {floors} s")
            for iteration in range(runs):
                for tool in tools:
                    seq += 1
                    rows = run_chain(
                        tool, fleet, projects, hosts, size, iteration, seq, work, client
                    )
                    record["rows"] += rows
                    if tool.name == "ours" and all(r["verified"] for r in rows):
                        wall = round(restart_floor(fleet, hosts[:size]), 3)
                        record["restart_floor"].setdefault(str(size), []).append(wall)
                        _say(f"  floor n={size:<3} bin/restart + health on every host: {wall} s")
                    (work / "results.json").write_text(json.dumps(record, indent=1))
        record["total_s"] = round(time.monotonic() - started, 1)
        (work / "results.json").write_text(json.dumps(record, indent=1))
        text = report.render(record)
        results_path.write_text(text)
        _say("\n" + report.summary(record))
        _say(f"\nwritten: {results_path} (raw figures: {work / 'results.json'})")
    except KeyboardInterrupt:
        _say("interrupted: removing the fleet")
        return 130
    finally:
        fleet.down()
        _say(f"fleet {fleet_name} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
