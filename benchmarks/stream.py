"""Transfer efficiency, measured before the scenarios: a 40 MB file streamed to one host with
OpenSSH and with paramiko the way our transport sends, both also into a file, against our
upload in a one-host deploy; and OpenSSH to every host at once. Also the phase and batch
figures of our runs, from the `at` stamps of `invoke ... --format json` events."""

from __future__ import annotations

import random
import statistics
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.floors import PORT, openssh_everywhere, reset, ssh_argv
from benchmarks.measure import run_measured
from benchmarks.projects import Host
from benchmarks.tools import Ours, events
from deployer.sandbox.fleet import Fleet

STREAM_MB = 40


def _say(text: str) -> None:
    print(text, flush=True)


# Timed on the host (containers share this machine's clock): session start to end of input.
_TIMED_CAT = "date +%s.%N; cat > {sink}; date +%s.%N; rm -f /srv/stream.bin"
TO_NULL, TO_FILE = "/dev/null", "/srv/stream.bin"


def _host_seconds(output: bytes) -> float:
    first, last = output.decode().split()[:2]
    return float(last) - float(first)


def _openssh_stream(fleet: Fleet, address: str, path: Path, sink: str = TO_NULL) -> float:
    with open(path, "rb") as fh:
        proc = subprocess.run(
            [*ssh_argv(fleet, address), _TIMED_CAT.format(sink=sink)],
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


def upload_figures(output: str, started_at: float, wall: float) -> dict[str, float]:
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
    reset(fleet)  # /srv belongs to deploy again
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
        reset(fleet)
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
        figures = upload_figures(res.output, res.started_at, res.wall)
        if "upload_mb_s_per_host" in figures:
            ours_rates.append(figures["upload_mb_s_per_host"])
    result["ours_mb_s"] = ours_rates
    if ours_rates:
        _say(f"  our upload (stage step) to {host.name}: {statistics.median(ours_rates):.0f} MB/s")

    # Every host at once: the most a fleet-wide upload could get through on this machine.
    targets = hosts[: max(sizes)]
    wall = openssh_everywhere(fleet, {h.address: "cat > /dev/null" for h in targets}, path)
    result["openssh_parallel_hosts"] = len(targets)
    result["openssh_parallel_mb_s"] = size * len(targets) / wall / 1e6
    _say(
        f"  OpenSSH streams to {len(targets)} hosts at once: "
        f"{result['openssh_parallel_mb_s']:.0f} MB/s aggregate"
    )
    return result


def store_upload(output: str) -> dict[str, int]:
    """The archive's size as our store mode reports its upload (the denominator of "sent ÷
    archive" when no SSH-mode run measured the archive)."""
    for e in events(output):
        text = str(e.get("text", ""))
        if e.get("event") == "Notice" and " bytes uploaded to s3://" in text:
            return {"store_upload_bytes": int(text.split()[2])}
    return {}


def batch_figures(output: str) -> dict[str, Any]:
    """Each batch of our rollout, from BatchStarted to BatchFinished (switch, restart, health
    checks until healthy): seconds, in order."""
    started: dict[int, float] = {}
    walls: list[float] = []
    for e in events(output):
        if e.get("event") == "BatchStarted":
            started[int(e["index"])] = float(e["at"])
        elif e.get("event") == "BatchFinished" and int(e["index"]) in started:
            walls.append(round(float(e["at"]) - started[int(e["index"])], 3))
    return {"batch_s": walls} if walls else {}
