"""RESULTS.md of a run with several apps and transfer modes (issue 18): per app its floors,
the scenario tables, every tool's time above the floors and our per-batch time above the
restart floor; then the deploying machine's bytes and CPU per transfer mode, the transfer
efficiency and the targets. Builds on report.py's tables, which read one app's part."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks import report
from benchmarks.report import MB, SCENARIO_TITLES, _groups, _median, _ok
from benchmarks.targets import targets_table

OURS = ("ours", "ours-store")


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def floors(rec: dict[str, Any], size: int) -> dict[str, float | None]:
    """Medians of the hosts' own work at `size`: stage (unpack), restart in one batch, restart
    in batches of 25% (sum over batches), and one such batch."""
    rollouts = rec.get("rollout_floor", {}).get(str(size)) or []
    return {
        "stage": _med(rec.get("floor", {}).get(str(size)) or []),
        "restart": _med(rec.get("restart_floor", {}).get(str(size)) or []),
        "rollout": _med([sum(r) for r in rollouts]),
        "batch": _med([b for r in rollouts for b in r]),
        "batches": len(rollouts[0]) if rollouts else None,
    }


def floor_of(scenario: str, fl: dict[str, float | None]) -> float | None:
    """What the hosts must do anyway in a scenario: unpack then restart in batches (a deploy),
    or restart in one batch (a rollback)."""
    if scenario == "rollback":
        return fl["restart"]
    if fl["stage"] is None or fl["rollout"] is None:
        return None
    return fl["stage"] + fl["rollout"]


def floor_table(rec: dict[str, Any]) -> str:
    lines = [
        "| hosts | stage floor: OpenSSH `tar -xzf` on all hosts at once | restart floor, one"
        " batch | restart floor, batches of 25% (batches × median batch) |",
        "|---:|---:|---:|---:|",
    ]
    for size in rec["sizes"]:
        fl = floors(rec, size)
        lines.append(
            f"| {size} | {_f(fl['stage'])} | {_f(fl['restart'])} | {_f(fl['rollout'])}"
            f" ({fl['batches'] or '-'} × {_f(fl['batch'])}) |"
        )
    return "\n".join(lines)


def above_floor_table(rec: dict[str, Any]) -> str:
    """Every tool's median wall against the floor of the same scenario and size."""
    groups = _groups(rec)
    tools = report._tools(rec)
    cells = " | ".join(f"{t}: wall − floor (÷ floor)" for t in tools)
    lines = [f"| scenario | hosts | floor s | {cells} |", "|---|---:|---:|" + "---:|" * len(tools)]
    for scenario in SCENARIO_TITLES:
        for size in rec["sizes"]:
            floor = floor_of(scenario, floors(rec, size))
            walls = []
            for tool in tools:
                wall = _median(groups.get((tool, scenario, size), []), "wall")
                walls.append(
                    "-"
                    if wall is None or not floor
                    else f"{wall - floor:+.2f} ({wall / floor:.2f}×)"
                )
            lines.append(f"| {scenario} | {size} | {_f(floor)} | " + " | ".join(walls) + " |")
    return "\n".join(lines)


def batch_table(rec: dict[str, Any]) -> str:
    """Our rollout batch by batch (BatchStarted to BatchFinished: switch, restart, health)
    against the hosts' own batch of the same size (switch, restart, first 200)."""
    lines = [
        "| scenario | hosts | mode | batches | our batch s, median (max) | floor batch s |"
        " above the floor per batch, median (max) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for scenario in ("first", "redeploy"):
        for size in rec["sizes"]:
            fl = floors(rec, size)
            for tool in OURS:
                rows = _ok([
                    r for r in rec["rows"]
                    if (r["tool"], r["scenario"], r["size"]) == (tool, scenario, size)
                ])  # fmt: skip
                walls = [b for r in rows for b in r.get("batch_s", [])]
                if not walls:
                    continue
                med, worst = statistics.median(walls), max(walls)
                over = (
                    f"{med - fl['batch']:+.2f} ({worst - fl['batch']:+.2f})"
                    if fl["batch"] is not None
                    else "-"
                )
                count = len(rows[0].get("batch_s", []))
                lines.append(
                    f"| {scenario} | {size} | {tool} | {count} | {med:.2f} ({worst:.2f}) |"
                    f" {_f(fl['batch'])} | {over} |"
                )
    return "\n".join(lines)


def controller_table(record: dict[str, Any]) -> str:
    """First deploys: what the deploying machine sent and its CPU, per transfer mode."""
    lines = [
        "| app | hosts | mode | sent MB (to the store) | sent ÷ archive | controller CPU s |"
        " wall s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, rec in record["apps"].items():
        groups = _groups(rec)
        ssh_first = [r for r in _ok(rec["rows"]) if (r["tool"], r["scenario"]) == ("ours", "first")]
        archive = next((r["archive_bytes"] for r in ssh_first if r.get("archive_bytes")), None)
        archive = archive or next(
            (r["store_upload_bytes"] for r in rec["rows"] if r.get("store_upload_bytes")), None
        )
        for size in rec["sizes"]:
            for tool in OURS:
                rows = groups.get((tool, "first", size), [])
                sent, store = _median(rows, "bytes_sent"), _median(rows, "store_bytes")
                if sent is None:
                    continue
                ratio = f"{sent / archive:.2f}×" if archive else "-"
                lines.append(
                    f"| {name} | {size} | {tool} | {sent / MB:.1f} ({(store or 0) / MB:.1f}) |"
                    f" {ratio} | {_f(_median(rows, 'cpu_tool'))} | {_f(_median(rows, 'wall'))} |"
                )
    return "\n".join(lines)


def heavy_targets(rec: dict[str, Any]) -> list[str]:
    """Issue 18's targets for the heavyweight app, judged at 20 hosts (or the largest)."""
    sizes = rec["sizes"]
    ref = 20 if 20 in sizes else max(sizes)
    groups = _groups(rec)
    fl = floors(rec, ref)
    out = []
    deploys = groups.get(("ours", "first", ref), []) + groups.get(("ours", "redeploy", ref), [])
    walls = [b for r in _ok(deploys) for b in r.get("batch_s", [])]
    if walls and fl["batch"] is not None:
        over = statistics.median(walls) - fl["batch"]
        out.append(
            f"| per batch at most 0.3 s above the restart floor ({ref} hosts, ours, SSH) |"
            f" {over:+.2f} s (max {max(walls) - fl['batch']:+.2f}) |"
            f" {'**met**' if over <= 0.3 else '**not met**'} |"
        )
    redeploy, floor = (
        _median(groups.get(("ours", "redeploy", ref), []), "wall"),
        floor_of("redeploy", fl),
    )
    if redeploy and floor:
        out.append(
            f"| redeploy within 1.15× of (stage floor + restart floor), {ref} hosts |"
            f" {redeploy / floor:.2f}× ({redeploy:.1f} s vs {floor:.1f} s) |"
            f" {'**met**' if redeploy <= 1.15 * floor else '**not met**'} |"
        )
    first = _median(groups.get(("ours", "first", ref), []), "wall")
    for peer in ("ansible", "pyinfra"):
        theirs = _median(groups.get((peer, "first", ref), []), "wall")
        if first and theirs:
            out.append(
                f"| first deploy to {ref} hosts ahead of {peer} | {first:.1f} s vs {theirs:.1f} s"
                f" | {'**met**' if first < theirs else '**not met**'} |"
            )
    return out


def render(record: dict[str, Any]) -> str:
    loads = [r["load_before"] for a in record["apps"].values() for r in a["rows"]]
    noisy = sum(1 for a in record["apps"].values() for r in a["rows"] if r.get("other_containers"))
    total = sum(len(a["rows"]) for a in record["apps"].values())
    parts = [
        "# Benchmark: our deployer vs ansible-core and pyinfra",
        "",
        f"Produced by `{record['command']}` (started {record['started']}, {record['runs']}"
        f" run(s) per tool, app and size, {record.get('total_s', 0) / 60:.0f} min in all; our"
        f" transfer modes: {', '.join(record['modes'])}). How it works and how each figure is"
        " counted: [README.md](README.md).",
        "",
        f"Load: 1-minute load average {record.get('load_start', '?')} at the start,"
        f" {record.get('load_end', '?')} at the end; before the runs median"
        f" {_f(_med(loads), '.1f')}, max {_f(max(loads) if loads else None, '.1f')}"
        f" ({record['machine'].get('cpus (nproc)', '?')} cores). Runs during which other"
        f" containers were running: {noisy} of {total}.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in {**record["machine"], **record["versions"]}.items()),
        "",
    ]
    for name, rec in record["apps"].items():
        tree = rec["tree"]
        parts += [
            f"# App `{name}`: {rec['title']}",
            "",
            f"Release: {tree['files']} files, {tree['bytes'] / MB:.1f} MB; the redeploy changes"
            f" `{tree['changed_file']}`.",
            "",
            "## The hosts' own work, no tool (floors, medians, s)",
            "",
            floor_table(rec),
            "",
            "## Time above the floors (median wall − floor)",
            "",
            "Floor of a first deploy or redeploy: stage floor + restart floor in batches of 25%;"
            " of a rollback: the restart floor in one batch.",
            "",
            above_floor_table(rec),
            "",
            "## Our batches against the hosts' own (from `--format json` events)",
            "",
            batch_table(rec),
            "",
        ]
        if name == "django" and (targets := heavy_targets(rec)):
            parts += ["## Targets (issue 18)", "", "| target | measured | |", "|---|---|---|"]
            parts += [*targets, ""]
        for scenario, title in SCENARIO_TITLES.items():
            parts += [f"## {title}", "", report.scenario_table(rec, scenario), ""]
        parts += [
            "## Ratios (peer ÷ ours, SSH mode)",
            "",
            report.ratio_table(rec),
            "",
            "## Where our time goes (SSH mode, medians, s)",
            "",
            report.phase_table(rec),
            "",
        ]
        if name == "light":
            parts += ["## Targets (issue 6)", "", targets_table(rec), ""]
    parts += [
        "# The deploying machine per transfer mode (first deploys)",
        "",
        "Sent: TCP payload acknowledged by the hosts' sshd and by the store (moto's server on"
        " loopback, standing in for S3); CPU: user + system seconds of `invoke deploy` and its"
        " children, the archive build included. Both hold on a loaded machine; wall does not.",
        "",
        controller_table(record),
        "",
    ]
    if record.get("stream"):
        parts += ["# Transfer efficiency", "", report.stream_table(record), ""]
    return "\n".join(parts)


def summary(record: dict[str, Any]) -> str:
    out = []
    for name, rec in record["apps"].items():
        out += [f"{name}: time above the floors", above_floor_table(rec), batch_table(rec)]
    out += ["deploying machine per mode", controller_table(record)]
    return "\n\n".join(out)
