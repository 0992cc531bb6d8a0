"""The benchmark: our deployer, ansible-core and pyinfra doing the same deploy on the same
sandbox fleet, side by side in one run. Usage (from the repository root):

    bash benchmarks/run            # full: 5, 10, 20, 40 hosts, 3 runs each -> benchmarks/RESULTS.md
    bash benchmarks/run --quick    # 5 and 20 hosts, 1 run -> benchmarks/work/RESULTS-quick.md

Fleet hosts use 127.0.1.1.. (`--network`; never addresses the tests use) and are removed at the end,
also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker

from benchmarks import results, tree
from benchmarks.apps import App
from benchmarks.floors import PORT, pack_floor_archive, reset, restart_floor, unpack_floor
from benchmarks.measure import become_subreaper, run_measured
from benchmarks.projects import DEPLOY_TO, Host, Projects
from benchmarks.sessions import fleet_counts
from benchmarks.setup import Setup, options, prepare_apps, start_store, stop_store, tools_for
from benchmarks.store_server import received
from benchmarks.stream import batch_figures, store_upload, transfer_efficiency, upload_figures
from benchmarks.tools import PEERS_BIN, SCENARIOS, Ours, remove, versions
from deployer.sandbox.fleet import Fleet, start_fleet

HERE = Path(__file__).resolve().parent
FLEET = "benchmark"


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


# ------------------------------------------------------------------ the scenarios


def _other_containers(client: docker.DockerClient, ours: Iterable[str]) -> int:
    """Running containers that are not this benchmark's: someone else's load on the machine."""
    mine = set(ours)
    return sum(1 for c in client.containers.list() if c.id not in mine)


def _live(fleet: Fleet, host: Host) -> str:
    code, out = fleet.exec(host.name, f"readlink {DEPLOY_TO}/current")
    return out.strip().rsplit("/", 1)[-1] if code == 0 else ""


def run_chain(
    tool: Any,
    app: App,
    fleet: Fleet,
    projects: Projects,
    hosts: list[Host],
    size: int,
    iteration: int,
    seq: int,
    work: Path,
    client: docker.DockerClient,
    store: tuple[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Fresh hosts, then first deploy, redeploy with one file changed, rollback: measured."""
    subset = hosts[:size]
    containers = {h.name: h.container_id for h in fleet.hosts}
    ours_like = isinstance(tool, Ours)
    reset(fleet)
    tree.set_change(projects.tree, 0, app.changed_file)
    rows: list[dict[str, Any]] = []
    deployed: list[str] = []
    for scenario in SCENARIOS:
        if scenario == "redeploy":
            tree.set_change(projects.tree, seq, app.changed_file)
        inv = tool.invocation(scenario, size, seq)
        load_before = round(os.getloadavg()[0], 2)
        others = _other_containers(client, containers.values())
        since = time.time()
        to_store = store if tool.name == "ours-store" else None
        store_before = received(*to_store) if to_store else 0
        res = run_measured(
            inv.argv,
            cwd=inv.cwd,
            env=inv.env,
            addresses=[h.address for h in subset],
            port=PORT,
            log_path=work / "logs" / f"{app.name}-n{size}-{tool.name}-{iteration}-{scenario}.log",
            before_close=inv.close,
            containers=[containers[h.name] for h in subset],
            store=to_store,
        )
        # Counted by the store itself: sampling sockets misses a fast upload (store_server.py).
        store_bytes = received(*to_store) - store_before if to_store else 0
        remove(inv.cleanup)
        time.sleep(0.3)  # let the last log lines reach docker
        counts = fleet_counts(client, [(h.name, containers[h.name]) for h in subset], since)
        if ours_like:
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
            "app": app.name,
            "tool": tool.name,
            "size": size,
            "iteration": iteration,
            "scenario": scenario,
            "ok": res.ok,
            "rc": res.rc,
            "verified": verified,
            "wall": round(res.wall, 3),
            # Everything the deploying machine sent: to the hosts' sshd, and to the store.
            "bytes_sent": res.bytes_sent + store_bytes,
            "store_bytes": store_bytes,
            "store_bytes_tcp": int(str(res.extra.get("store_bytes", 0))),  # sampled, a floor
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
        if ours_like:
            row.update(upload_figures(res.output, res.started_at, res.wall))
            row.update(batch_figures(res.output))
            row.update(store_upload(res.output))
        rows.append(row)
        _say(
            f"  {app.name:6} {tool.name:10} n={size:<3} run {iteration + 1} {scenario:9}"
            f" {'ok ' if verified else 'FAILED'} {res.wall:7.2f}s"
            f"  sessions/host {row['sessions_per_host_mean']:5.1f}"
            f"  sent {row['bytes_sent'] / 1e6:8.2f} MB"
            f"  peak {res.peak_rss / 2**20:6.0f} MB RSS ({res.peak_pss / 2**20:.0f} PSS)"
            f"  CPU {res.cpu_tool:5.1f}s tool, {res.cpu_hosts or 0:5.1f}s hosts"
            f"  load {load_before}" + (f"  [{others} other containers running]" if others else "")
        )
        if not verified:
            _say(
                f"    exit {res.rc}, expected {expected}, live {sorted(live)};"
                f" log: {work / 'logs'}\n" + _indent(res.output[-2500:])
            )
            break
    tree.set_change(projects.tree, 0, app.changed_file)
    return rows


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


def _restart_floors(fleet: Fleet, hosts: list[Host], size: int, rec: dict[str, Any]) -> None:
    """The hosts' own restart-to-healthy, after a verified chain of ours left two releases on
    every host: once in one batch (a rollback's shape), once in batches of 25% (a rollout's)."""
    subset = hosts[:size]
    whole = restart_floor(fleet, subset, 100)
    rec["restart_floor"].setdefault(str(size), []).append(round(sum(whole), 3))
    per_batch = [round(w, 3) for w in restart_floor(fleet, subset, 25)]
    rec["rollout_floor"].setdefault(str(size), []).append(per_batch)
    _say(
        f"  floor n={size:<3} switch + bin/restart + first 200: all hosts at once"
        f" {sum(whole):.2f} s; in batches of 25% {sum(per_batch):.2f} s {per_batch}"
        f"  load {os.getloadavg()[0]:.2f}"
    )


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = options(__doc__ or "")
    args = parser.parse_args(argv)
    setup = Setup.from_args(parser, args, HERE)
    if not (PEERS_BIN / "ansible-playbook").exists() or not (PEERS_BIN / "pyinfra").exists():
        _say(f"the peers' environment is missing ({PEERS_BIN.parent}): run `bash benchmarks/run`")
        return 2
    work, sizes, runs = setup.work, setup.sizes, setup.runs
    command = "bash benchmarks/run" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    (work / "logs").mkdir(parents=True, exist_ok=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    become_subreaper()

    hosts = [Host(f"bench{i:02d}", f"{setup.network}.{i}") for i in range(1, max(sizes) + 1)]
    started = time.monotonic()
    record: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "sizes": sizes,
        "runs": runs,
        "modes": setup.modes,
        "machine": _machine(),
        "versions": versions(),
        "apps": prepare_apps(setup),
        "load_start": round(os.getloadavg()[0], 2),
    }
    fleet_name = f"{FLEET}-{setup.network.replace('.', '-')}"
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
    store = None
    try:
        record["fleet_start_s"] = round(time.monotonic() - t0, 2)
        _say(f"fleet up in {record['fleet_start_s']}s (not counted in any figure)")
        sshd = fleet.exec(fleet.hosts[0].name, "ssh -V 2>&1")[1].strip()
        record["versions"]["OpenSSH server (hosts)"] = sshd
        hosts = [Host(h.name, h.address) for h in fleet.hosts]
        if "store" in setup.modes:
            store = start_store(setup.network)
        plans = tools_for(setup, fleet, hosts, store)
        client = docker.from_env()

        if setup.stream:
            _say("transfer efficiency (first app, SSH mode):")
            ours = next((t for t in plans[0].tools if type(t) is Ours), None)
            if ours is not None:
                record["stream"] = transfer_efficiency(fleet, work, ours, hosts, sizes, runs)

        seq = 0
        for size in sizes:
            for plan in plans:
                rec = record["apps"][plan.app.name]
                archive = work / f"floor-{plan.app.name}.tar.gz"
                if not archive.exists():
                    pack_floor_archive(plan.projects.tree, archive)
                floors = rec["floor"][str(size)] = []
                for _ in range(runs):
                    floors.append(round(unpack_floor(fleet, archive, hosts[:size]), 3))
                _say(
                    f"  floor n={size:<3} {plan.app.name}: OpenSSH + tar -xzf on every host:"
                    f" {floors} s  load {os.getloadavg()[0]:.2f}"
                )
                for iteration in range(runs):
                    floored = False
                    for tool in plan.tools:
                        seq += 1
                        rows = run_chain(
                            tool, plan.app, fleet, plan.projects, hosts, size, iteration, seq,
                            work, client, store.endpoint if store else None,
                        )  # fmt: skip
                        rec["rows"] += rows
                        if (
                            isinstance(tool, Ours)
                            and not floored
                            and all(r["verified"] for r in rows)
                        ):
                            _restart_floors(fleet, hosts, size, rec)
                            floored = True
                        (work / "results.json").write_text(json.dumps(record, indent=1))
        record["total_s"] = round(time.monotonic() - started, 1)
        record["load_end"] = round(os.getloadavg()[0], 2)
        (work / "results.json").write_text(json.dumps(record, indent=1))
        setup.results.write_text(results.render(record))
        _say("\n" + results.summary(record))
        _say(f"\nwritten: {setup.results} (raw figures: {work / 'results.json'})")
    except KeyboardInterrupt:
        _say("interrupted: removing the fleet")
        return 130
    finally:
        if store is not None:
            stop_store(store)
        fleet.down()
        _say(f"fleet {fleet_name} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
