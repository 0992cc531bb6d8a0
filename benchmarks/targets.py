"""The targets of issue 6 (the light app), judged from a run's rows: first-deploy ratios
against the peers, redeploy bytes, rollback time, remote commands per host, growth with the
fleet, peak memory."""

from __future__ import annotations

from typing import Any

from benchmarks.report import MB, PEERS, MiB, _floor, _groups, _median


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def targets(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    groups = _groups(record)
    sizes = record["sizes"]
    out: list[tuple[str, str, str]] = []

    def med(tool: str, scenario: str, size: int, key: str = "wall") -> float | None:
        return _median(groups.get((tool, scenario, size), []), key)

    ref = 20 if 20 in sizes else max(sizes)
    ours_first = med("ours", "first", ref)
    for peer, want in (("ansible", 5.0), ("pyinfra", 2.0)):
        theirs = med(peer, "first", ref)
        ratio = theirs / ours_first if theirs and ours_first else None
        out.append(
            (
                f"first deploy to {ref} hosts ≥{want:g}× faster than {peer}",
                f"{ratio:.1f}× ({theirs:.1f} s vs {ours_first:.1f} s)" if ratio else "-",
                _met(None if ratio is None else ratio >= want),
            )
        )
    floor = _floor(record, ref)
    if floor is not None and ours_first:
        for peer in PEERS:
            theirs = med(peer, "first", ref)
            if theirs:
                out.append(
                    (
                        f"first deploy to {ref} hosts, time added on top of the hosts' own work"
                        f" (wall − floor of {floor:.1f} s): {peer} ÷ ours",
                        f"{(theirs - floor) / max(ours_first - floor, 0.01):.1f}×"
                        f" ({theirs - floor:.1f} s vs {ours_first - floor:.1f} s)",
                        "(context)",
                    )
                )
    first_bytes = med("ours", "first", ref, "bytes_sent")
    re_bytes = med("ours", "redeploy", ref, "bytes_sent")
    share = re_bytes / first_bytes if re_bytes is not None and first_bytes else None
    out.append(
        (
            f"redeploy (one file changed) to {ref} hosts sends <2% of the first deploy's bytes",
            f"{share:.1%} ({(re_bytes or 0) / MB:.2f} MB vs {(first_bytes or 0) / MB:.2f} MB)"
            if share is not None
            else "-",
            _met(None if share is None else share < 0.02),
        )
    )
    rb = med("ours", "rollback", ref)
    out.append(
        (
            f"rollback of {ref} hosts in one batch < 3 s",
            f"{rb:.2f} s" if rb else "-",
            _met(None if rb is None else rb < 3.0),
        )
    )
    rb_floor = _floor(record, ref, "restart_floor")
    if rb and rb_floor is not None:
        out.append(
            (
                f"rollback of {ref} hosts: the hosts' own part alone (switch, restart, first 200"
                " with it, no tool)",
                f"{rb_floor:.2f} s; ours took {rb - rb_floor:+.2f} s more"
                + (" (within run-to-run noise)" if abs(rb - rb_floor) < 0.1 * rb_floor else ""),
                "(context)",
            )
        )
    rb_ansible = med("ansible", "rollback", ref)
    ratio = rb_ansible / rb if rb and rb_ansible else None
    out.append(
        (
            f"rollback of {ref} hosts ≥10× faster than ansible",
            f"{ratio:.1f}× ({rb_ansible:.1f} s vs {rb:.2f} s)" if ratio else "-",
            _met(None if ratio is None else ratio >= 10),
        )
    )
    worst = max(
        (
            r["sessions_per_host_max"]
            for r in record["rows"]
            if r["tool"] == "ours" and r["scenario"] in ("first", "redeploy") and r["verified"]
        ),
        default=None,
    )
    out.append(
        (
            "≤8 remote commands (exec sessions) per host per deploy",
            f"{worst} at most" if worst is not None else "-",
            _met(None if worst is None else worst <= 8),
        )
    )
    small, large = min(sizes), max(sizes)
    w_small, w_large = med("ours", "first", small), med("ours", "first", large)
    growth = w_large / w_small if w_small and w_large else None
    out.append(
        (
            f"first deploy {small}→{large} hosts (serial 25%) grows <3× in wall time",
            f"{growth:.2f}× ({w_small:.1f} s → {w_large:.1f} s)" if growth else "-",
            _met(None if growth is None or large < 40 else growth < 3.0)
            + ("" if large >= 40 else " (needs 40 hosts: full run)"),
        )
    )
    f_small, f_large = _floor(record, small), _floor(record, large)
    if f_small and f_large and large > small:
        out.append(
            (
                f"floor (the hosts' own work, no tool) {small}→{large} hosts",
                f"{f_large / f_small:.2f}× ({f_small:.1f} s → {f_large:.1f} s)",
                "(context)",
            )
        )
    peak = max(
        (r["peak_rss"] for r in record["rows"] if r["tool"] == "ours" and r["size"] == large),
        default=None,
    )
    out.append(
        (
            f"peak memory of our deploying process at {large} hosts <200 MB",
            f"{peak / MiB:.0f} MB RSS" if peak else "-",
            _met(None if peak is None or large < 40 else peak < 200 * MiB)
            + ("" if large >= 40 else " (needs 40 hosts: full run)"),
        )
    )
    return out


def targets_table(record: dict[str, Any]) -> str:
    lines = ["| target (issue 6) | measured | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(record)]
    return "\n".join(lines)
