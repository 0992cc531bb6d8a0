"""Turn the raw rows of a benchmark run into the tables of RESULTS.md and the terminal summary."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

SCENARIO_TITLES = {
    "first": "First deploy (fresh hosts, serial 25%)",
    "redeploy": "Redeploy with one file changed (serial 25%)",
    "rollback": "Rollback to the previous release (one batch: serial 100%)",
}
PEERS = ("ansible", "pyinfra")
# The hosts' own work with no tool (benchmarks/floors.py): the record key, and what was run.
FLOORS = {
    "first": ("floor", "into `tar -xzf -`"),
    "rollback": ("restart_floor", "switching release, `bin/restart`, first 200 with it"),
}
MB = 1e6
MiB = 2**20


def _groups(record: dict[str, Any]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in record["rows"]:
        groups[(row["tool"], row["scenario"], row["size"])].append(row)
    return groups


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["verified"]]


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in _ok(rows) if r.get(key) is not None]
    return statistics.median(values) if values else None


def _wall(rows: list[dict[str, Any]]) -> str:
    ok = _ok(rows)
    if not ok:
        return f"FAILED ({len(rows)} run(s))" if rows else "-"
    walls = [r["wall"] for r in ok]
    text = f"{statistics.median(walls):.2f}"
    if len(walls) > 1:
        text += f" ({min(walls):.2f}–{max(walls):.2f})"
    if len(ok) < len(rows):
        text += f" [{len(rows) - len(ok)} failed]"
    return text


def _ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None or ours == 0:
        return "-"
    return f"{peer / ours:.1f}×"


def _tools(record: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for row in record["rows"]:
        if row["tool"] not in seen:
            seen.append(row["tool"])
    return seen


def scenario_table(record: dict[str, Any], scenario: str) -> str:
    groups = _groups(record)
    lines = [
        "| hosts | tool | wall s, median (min–max) | exec sessions/host (sftp) | "
        "SSH connections/host | MB sent (per host) | peak memory MB: RSS (PSS) | "
        "CPU s: tool / hosts |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in record["sizes"]:
        for tool in _tools(record):
            rows = groups.get((tool, scenario, size), [])
            if not rows:
                continue
            ok = _ok(rows) or rows
            sessions = statistics.median(r["sessions_per_host_mean"] for r in ok)
            sftp = statistics.median(r["sftp_per_host_mean"] for r in ok)
            conns = statistics.median(r["connections_per_host_mean"] for r in ok)
            sent = statistics.median(r["bytes_sent"] for r in ok)
            rss = max(r["peak_rss"] for r in ok)
            pss = max(r["peak_pss"] for r in ok)
            name = "**ours**" if tool == "ours" else tool
            cpu_tool = statistics.median(r.get("cpu_tool", 0.0) for r in ok)
            hosts = [r["cpu_hosts"] for r in ok if r.get("cpu_hosts") is not None]
            cpu_hosts = f"{statistics.median(hosts):.1f}" if hosts else "-"
            lines.append(
                f"| {size} | {name} | {_wall(rows)} | {sessions:.1f} ({sftp:.1f}) | {conns:.1f} | "
                f"{sent / MB:.2f} ({sent / size / MB:.2f}) | {rss / MiB:.0f} ({pss / MiB:.0f}) | "
                f"{cpu_tool:.1f} / {cpu_hosts} |"
            )
        if scenario in FLOORS:
            key, what = FLOORS[scenario]
            floor = _floor(record, size, key)
            if floor is not None:
                lines.append(
                    f"| {size} | floor: no tool, OpenSSH {what} on every host at once |"
                    f" {floor:.2f} | 1.0 (0.0) | 1.0 | | | |"
                )
    return "\n".join(lines)


def _floor(record: dict[str, Any], size: int, key: str = "floor") -> float | None:
    """Median wall time of the hosts' own work with no tool (see benchmarks/run.py)."""
    walls = (record.get(key) or {}).get(str(size)) or []
    return statistics.median(walls) if walls else None


def ratio_table(record: dict[str, Any]) -> str:
    groups = _groups(record)
    peers = [p for p in PEERS if p in _tools(record)]
    header = (
        "| scenario | hosts | "
        + " | ".join(f"{p}/ours wall | {p}/ours bytes | {p}/ours sessions" for p in peers)
        + " |"
    )
    lines = [header, "|---|---:|" + "---:|" * (3 * len(peers))]
    for scenario in SCENARIO_TITLES:
        for size in record["sizes"]:
            ours = groups.get(("ours", scenario, size), [])
            cells = []
            for peer in peers:
                theirs = groups.get((peer, scenario, size), [])
                for key in ("wall", "bytes_sent", "sessions_per_host_mean"):
                    cells.append(_ratio(_median(theirs, key), _median(ours, key)))
            lines.append(f"| {scenario} | {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phase_table(record: dict[str, Any]) -> str:
    groups = _groups(record)
    lines = [
        "| scenario | hosts | wall | start, load, build, plan | prepare (lock, facts) | stage "
        "(upload, unpack, verify) | rollout (switch, restart, health) | finish | exit | "
        "upload MB/s per host (aggregate) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIO_TITLES:
        for size in record["sizes"]:
            rows = _ok(groups.get(("ours", scenario, size), []))
            if not rows:
                continue

            def m(key: str, rows: list[dict[str, Any]] = rows) -> float:
                values = [r[key] for r in rows if key in r]
                return statistics.median(values) if values else float("nan")

            lines.append(
                f"| {scenario} | {size} | {m('wall'):.2f} | {m('t_build'):.2f} | "
                f"{m('t_prepare'):.2f} | {m('t_stage'):.2f} | {m('t_rollout'):.2f} | "
                f"{m('t_finish'):.2f} | {m('t_exit'):.2f} | {m('upload_mb_s_per_host'):.0f} "
                f"({m('upload_mb_s_aggregate'):.0f}) |"
            )
    return "\n".join(lines)


def stream_table(record: dict[str, Any]) -> str:
    s = record.get("stream") or {}
    if not s:
        return "(not measured)"

    def med(key: str) -> float | None:
        values = s.get(key) or []
        return statistics.median(values) if values else None

    openssh, paramiko_rate, ours = med("openssh_mb_s"), med("paramiko_mb_s"), med("ours_mb_s")
    lines = [
        "| stream to one host | MB/s (median of 3) | vs OpenSSH |",
        "|---|---:|---:|",
        f"| OpenSSH `ssh host 'cat > /dev/null' < {s['file_mb']:.0f} MB file` |"
        f" {openssh:.0f} | 1.00 |"
        if openssh
        else "| OpenSSH | - | |",
    ]
    if paramiko_rate and openssh:
        lines.append(
            f"| paramiko exec + sendall(256 KiB), same file (our transport's way) | "
            f"{paramiko_rate:.0f} | {paramiko_rate / openssh:.2f} |"
        )
    for key, label in (
        ("openssh_file_mb_s", "OpenSSH, written to a file on the host"),
        ("paramiko_file_mb_s", "paramiko, written to a file on the host"),
    ):
        rate = med(key)
        if rate and openssh:
            lines.append(
                f"| {label} (`cat > /srv/stream.bin`) | {rate:.0f} | {rate / openssh:.2f} |"
            )
    if ours and openssh:
        lines.append(
            f"| **ours**: release archive upload in the stage step, written to a file"
            f" on the host (1-host deploy) | "
            f"{ours:.0f} | {ours / openssh:.2f} |"
        )
    if s.get("openssh_parallel_mb_s"):
        lines.append(
            f"| OpenSSH, {s['openssh_parallel_hosts']} hosts at once (aggregate) | "
            f"{s['openssh_parallel_mb_s']:.0f} | |"
        )
    return "\n".join(lines)


def summary(record: dict[str, Any]) -> str:
    from benchmarks.targets import targets_table  # it builds on this module's helpers

    return "\n\n".join(
        [
            "Ratios (peer ÷ ours; above 1: ours is faster / sends less / runs fewer commands):",
            ratio_table(record),
            "Targets:",
            targets_table(record),
            "Transfer efficiency:",
            stream_table(record),
        ]
    )


def render(record: dict[str, Any]) -> str:
    from benchmarks.targets import targets_table  # it builds on this module's helpers

    machine = "\n".join(f"| {k} | {v} |" for k, v in record["machine"].items())
    versions = "\n".join(f"| {k} | {v} |" for k, v in record["versions"].items())
    tree = record["tree"]
    parts = [
        "# Benchmark: our deployer vs ansible-core and pyinfra",
        "",
        f"Produced by `{record['command']}` (started {record['started']}, "
        f"{record['runs']} run(s) per tool and size, {record.get('total_s', 0) / 60:.0f} min in "
        f"all). How it works and how each figure is counted: [README.md](README.md).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        machine,
        versions,
        "",
        f"Release tree: {tree['files']} files, {tree['bytes'] / MB:.1f} MB (seed {tree['seed']}); "
        f"the redeploy changes `{tree['changed_file']}`. Fleet of {max(record['sizes'])} sandbox "
        f"hosts started in {record.get('fleet_start_s', '?')} s (not counted).",
        "",
        "## Targets",
        "",
        targets_table(record),
        "",
        "## Ratios (peer ÷ ours)",
        "",
        "Above 1: ours is faster, sends fewer bytes, runs fewer remote commands. Medians.",
        "",
        ratio_table(record),
        "",
    ]
    noisy = sum(1 for r in record["rows"] if r.get("other_containers"))
    loads = [r["load_before"] for r in record["rows"] if r.get("load_before") is not None]
    load_text = (
        f" The 1-minute load average before the runs: median {statistics.median(loads):.1f},"
        f" max {max(loads):.1f} (2 cores)."
        if loads
        else ""
    )
    parts += [
        "CPU s: user + system seconds of the tool's process tree (its rusage) / of the hosts'"
        " containers (their cgroups) during the run. Both share the machine's cores: a run"
        " cannot take less wall time than their sum divided by the number of cores.",
        "",
        f"Runs during which containers other than this fleet's were running (someone else's"
        f" tests on this machine): {noisy} of {len(record['rows'])}.{load_text}",
        "",
    ]
    for scenario, title in SCENARIO_TITLES.items():
        parts += [f"## {title}", "", scenario_table(record, scenario), ""]
    parts += [
        "## Transfer efficiency",
        "",
        stream_table(record),
        "",
        "## Where our time goes (medians, seconds, from our JSON events)",
        "",
        phase_table(record),
        "",
        "For rollbacks the first column runs until the rollback starts, so it includes taking"
        " the lock and reading the facts on every host.",
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":  # re-render a report from a run's raw figures
    import json
    import sys
    from pathlib import Path

    record = json.loads(Path(sys.argv[1]).read_text())
    if "apps" in record:  # a run with several apps and modes (issue 18)
        from benchmarks import results

        print(results.render(record), end="")
    else:
        print(render(record), end="")
