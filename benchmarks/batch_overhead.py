"""What a batch costs above the app's own restart (issue 18), and how long each host's
`finish` takes on a first deploy.

The floor: for each batch of the rollout, `bin/restart` started on every host of the batch at
once over already-open SSH sessions, then this machine polls every host's /health every 10 ms
until it answers 200; the batch's floor is when the last host did. Ours: the same batches in
`invoke deploy --format json`, from the first `switch` step started to the last host's
`HealthChecked` (and BatchStarted -> BatchFinished). The two alternate (deploy, floor, deploy,
floor, ...), since wall times on a shared machine drift; the load average goes with each row.

The app is benchmarks/tree.py's, with a restart that takes seconds as real apps' do: its
server sleeps `--startup` seconds before it binds (imports, warm-up). `--restart returns`
(default) has bin/restart return as soon as the server is spawned, as `systemctl restart` of
a Type=simple unit does, so the health check finds when the app is up; `--restart waits`
keeps the benchmark's bin/restart, which returns once the port is bound.

    .venv/bin/python -m benchmarks.batch_overhead --network 127.0.6 --hosts 20 --rounds 3
    .venv/bin/python -m benchmarks.batch_overhead --network 127.0.6 --finish --copies 2 --disk

`--finish` runs first deploys only (fleet reset before each) of a bigger tree (`--copies`
times the generated one, ~3,000 files and 40 MB each) and reports every host's finish step.
`--disk` keeps /srv on the container's own disk instead of a tmpfs. The deploys' events are
read in batch_events.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import tree
from benchmarks.batch_events import finish_steps, our_batches, trace_summary
from benchmarks.projects import DEPLOY_TO, Host, env_name, write_projects
from benchmarks.tools import OUR_BIN, _base_env, events
from deployer.sandbox.fleet import Fleet, find_fleet, start_fleet

HERE = Path(__file__).resolve().parent
PORT = 2222
APP_PORT = 8000

_SLOW_SERVER = """\
# Stands in for a real app's start-up (imports, warm-up) before it listens.
import os, runpy, time
time.sleep({startup})
runpy.run_path(os.path.join(os.path.dirname(os.path.realpath(__file__)), "server.py"),
               run_name="__main__")
"""


# `--finish`: a `bash` early on the deploy user's PATH that traces the finish script (every
# command with its start time, $EPOCHREALTIME) into /tmp/finish-trace.PID on the host, and
# runs every other script as is. The deployer is unchanged: it runs `bash -c SCRIPT`.
_TRACING_BASH = """\
#!/bin/bash
if [ "$1" = -c ] && [[ $2 == *"@@step finish"* ]]; then
  exec /bin/bash -c 'exec 9>>"/tmp/finish-trace.$$"; BASH_XTRACEFD=9
    PS4="+ \\$EPOCHREALTIME "; echo "+ $EPOCHREALTIME bash" >&9; set -x; eval "$0"' "$2"
fi
exec /bin/bash "$@"
"""


def _say(text: str) -> None:
    print(text, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def prepare_tree(work: Path, seed: int, startup: float, restart: str, copies: int) -> Path:
    """The generated tree, `copies` times (seeds seed, seed+1, ...), with a slow start-up."""
    app = work / "ours" / "app"
    tree.generate(app, seed)
    for extra in range(1, copies):
        other = work / f"extra{extra}"
        tree.generate(other / "tree", seed + extra)
        target = app / f"vendor{extra}"
        if not target.exists():
            shutil.copytree(other / "tree", target, ignore=shutil.ignore_patterns("bin"))
    (app / "slow_server.py").write_text(_SLOW_SERVER.format(startup=startup))
    text = (tree.APP_SOURCE / "bin" / "restart").read_text()
    text = text.replace('"$release/server.py"', '"$release/slow_server.py"')
    # When the restart began, by the hosts' clock (the machine's: containers share it).
    made = 'mkdir -p -- "$shared/run" "$shared/log"\n'
    text = text.replace(made, made + 'date +%s.%N > "$shared/run/restart-started"\n', 1)
    if restart == "returns":  # like systemctl restart of a Type=simple unit
        head, _, _ = text.partition("for _ in $(seq 200)")
        text = head + 'echo "restart: spawned pid $pid from $release"\n'
    (app / "bin" / "restart").write_text(text)
    (app / "bin" / "restart").chmod(0o755)
    return app


def set_interval(ours: Path, interval: float | None) -> None:
    if interval is None:
        return
    for name in ("deploy.yml", "rollback.yml"):
        path = ours / "playbooks" / name
        lines = [
            f"  interval: {interval}" if line.startswith("  interval:") else line
            for line in path.read_text().splitlines()
        ]
        path.write_text("\n".join(lines) + "\n")


def deploy(ours: Path, size: int, log: Path, code: str = "") -> list[dict[str, Any]]:
    """One `invoke deploy`; `code`, when given, is a checkout whose deployer/ is imported
    instead of this one's (to compare versions in one run)."""
    env = _base_env()
    env["PATH"] = f"{OUR_BIN}:{env['PATH']}"
    argv = [str(OUR_BIN / "invoke"), "deploy", "--env", env_name(size), "--format", "json"]
    if code:  # the editable install's finder comes first on sys.meta_path: drop it
        argv = [
            str(OUR_BIN / "python"),
            "-c",
            "import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in"
            f" getattr(f, '__module__', '')]; sys.path.insert(0, {code!r});"
            " from invoke.main import program; sys.argv[0] = 'invoke'; sys.exit(program.run())",
            *argv[1:],
        ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, cwd=ours, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    _say(json.dumps({"deploy_cpu_s": round(cpu, 2), "code": code or "."}))
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"deploy failed ({done.returncode}); see {log}")
    return events(done.stdout)


def host_times(fleet: Fleet, hosts: list[Host]) -> dict[str, tuple[float, float]]:
    """Per host: when its last bin/restart began and when the app bound its port (the
    pidfile's mtime, written once bound)."""
    run = f"{DEPLOY_TO}/shared/run"
    out = {}
    for h in hosts:
        code, text = fleet.exec(h.name, f"cat {run}/restart-started; stat -c %.9Y {run}/app.pid")
        began, bound = (float(v) for v in text.split())
        out[h.name] = (began, bound)
    return out


def _healthy(address: str) -> bool:
    try:
        with socket.create_connection((address, APP_PORT), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def floor_batch(fleet: Fleet, hosts: list[Host]) -> tuple[float, float]:
    """bin/restart on every host at once (sessions opened first), until all answer 200."""
    clients = {h.name: fleet.ssh_client(h.name) for h in hosts}
    done: dict[str, float] = {}
    gate = threading.Barrier(len(hosts) + 1)

    def one(h: Host) -> None:
        gate.wait()
        _, out, _ = clients[h.name].exec_command(f"cd {DEPLOY_TO}/current && ./bin/restart")
        out.channel.recv_exit_status()
        while not _healthy(h.address):
            time.sleep(0.01)
        done[h.name] = time.monotonic()

    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    gate.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    for client in clients.values():
        client.close()
    floor = max(done.values()) - started
    times = host_times(fleet, hosts)
    app = max(b for _, b in times.values()) - min(a for a, _ in times.values())
    return floor, floor - app


def _summary(values: list[float]) -> str:
    return f"mean {statistics.mean(values):.2f} s, max {max(values):.2f} s (n={len(values)})"


def run_batches(args: argparse.Namespace, fleet: Fleet, ours: Path, app: Path) -> dict[str, Any]:
    hosts = fleet_hosts(args)
    size = args.hosts
    per_batch = max(1, size // 4)
    batches = [hosts[i : i + per_batch] for i in range(0, size, per_batch)]
    rows: list[dict[str, Any]] = []
    _say("first deploy (not measured)")
    deploy(ours, size, args.work / "deploy-0.log")
    generation = 0
    variants = dict(v.split("=", 1) for v in args.variants.split(",")) if args.variants else {}
    for _ in range(args.rounds):
        for variant, code in (variants or {"ours": ""}).items():
            generation += 1
            tree.set_change(app, generation)
            load = _load()
            evs = deploy(ours, size, args.work / f"deploy-{generation}.log", code)
            for b in our_batches(evs, host_times(fleet, hosts)):
                row = {k: round(v, 3) for k, v in b.items()}
                rows.append({"kind": "ours", "variant": variant, "load": load, **row})
                _say(json.dumps(rows[-1]))
        for batch in batches:
            load = _load()
            floor, above = floor_batch(fleet, batch)
            rows.append(
                {
                    "kind": "floor",
                    "load": load,
                    "floor": round(floor, 3),
                    "above_app": round(above, 3),
                }
            )
            _say(json.dumps(rows[-1]))
    floor_v = [r["floor"] for r in rows if r["kind"] == "floor"]
    result: dict[str, Any] = {
        "floor": _summary(floor_v),
        "floor_above_app": _summary([r["above_app"] for r in rows if r["kind"] == "floor"]),
    }
    for variant in variants or {"ours": ""}:
        mine = [r for r in rows if r.get("variant") == variant]
        ours_v = [r["switch_to_healthy"] for r in mine]
        result[variant] = {
            "switch_to_healthy": _summary(ours_v),
            "minus_floor_mean": round(statistics.mean(ours_v) - statistics.mean(floor_v), 3),
            "above_app": _summary([r["above_app"] for r in mine]),
            "bound_to_healthy": _summary([r["bound_to_healthy"] for r in mine]),
            "switch_to_restart": _summary([r["switch_to_restart"] for r in mine]),
        }
    result["loads"] = sorted({r["load"] for r in rows})
    result["rows"] = rows
    return result


def finish_traces(fleet: Fleet, hosts: list[Host]) -> dict[str, list[tuple[float, str]]]:
    """Each host's traced finish: (start time, command) per line, then removed."""
    out = {}
    for h in hosts:
        _, text = fleet.exec(
            h.name, "cat /tmp/finish-trace.* 2>/dev/null; rm -f /tmp/finish-trace.*"
        )
        lines = []
        for line in text.splitlines():
            mark, _, rest = line.partition(" ")
            at, _, command = rest.partition(" ")
            if mark.startswith("+") and at.replace(".", "").isdigit():
                lines.append((float(at), command[:60]))
        out[h.name] = lines
    return out


def run_finish(args: argparse.Namespace, fleet: Fleet, ours: Path) -> dict[str, Any]:
    hosts = fleet_hosts(args)
    for h in hosts:
        fleet.exec(
            h.name,
            f"printf %s {shlex.quote(_TRACING_BASH)} > /usr/local/bin/bash"
            " && chmod 755 /usr/local/bin/bash",
        )
    rows = []
    for attempt in range(args.rounds):
        fleet.reset()
        os.sync()
        load = _load()
        evs = deploy(ours, args.hosts, args.work / f"first-{attempt}.log")
        row = {"load": load, **finish_steps(evs)}
        row |= trace_summary(evs, finish_traces(fleet, hosts))
        rows.append(row)
        _say(json.dumps(rows[-1]))
    return {"rows": rows}


def fleet_hosts(args: argparse.Namespace) -> list[Host]:
    return [Host(f"bench{i:02d}", f"{args.network}.{i}") for i in range(1, args.hosts + 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_overhead")
    parser.add_argument("--network", required=True, help="first three octets (loopback)")
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup", type=float, default=3.0)
    parser.add_argument("--restart", choices=("returns", "waits"), default="returns")
    parser.add_argument("--interval", type=float, help="health.interval (playbook's: 0.2)")
    parser.add_argument(
        "--variants", help="name=checkout,...: deployer versions to alternate (PYTHONPATH)"
    )
    parser.add_argument("--finish", action="store_true", help="first deploys: finish timings")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--disk", action="store_true", help="/srv on disk, not tmpfs")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=HERE / "work-batch")
    parser.add_argument(
        "--keep", action="store_true", help="reuse a running fleet of this size and leave it up"
    )
    args = parser.parse_args(argv)
    if not args.network.startswith("127."):
        parser.error("--network must be inside 127.0.0.0/8")
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    hosts = fleet_hosts(args)
    app = prepare_tree(args.work, args.seed, args.startup, args.restart, args.copies)
    name = f"bench-batch-{args.network.replace('.', '-')}{'-disk' if args.disk else ''}"
    found = find_fleet(name) if args.keep else None
    fleet = (
        found
        if found and len(found.hosts) == args.hosts
        else start_fleet(
            name,
            [(h.name, h.address) for h in hosts],
            args.work / "fleet",
            port=PORT,
            timeout=300,
            tmpfs=[] if args.disk else ["/srv"],
        )
    )
    try:
        projects = write_projects(
            args.work, hosts, [args.hosts], fleet.key_path, fleet.known_hosts_path
        )
        set_interval(projects.ours, args.interval)
        record: dict[str, Any] = {
            "command": "python -m benchmarks.batch_overhead " + " ".join(argv or sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cores": os.cpu_count(),
        }
        if args.finish:
            record |= run_finish(args, fleet, projects.ours)
        else:
            record |= run_batches(args, fleet, projects.ours, app)
        (args.work / "result.json").write_text(json.dumps(record, indent=1))
        _say(json.dumps({k: v for k, v in record.items() if k != "rows"}, indent=1))
    finally:
        if not args.keep:
            fleet.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
