"""Delivery metrics, the four DORA keys, from the hosts' own history records: deployment
frequency, lead time for changes, change failure rate and time to restore (drills apart).

Pure: records and `now` in, figures out. Nothing here connects, reads a clock or prints;
`render_*` turn figures into text, JSON or the Prometheus text exposition format. A figure
computed from fewer than `min_runs` runs has no value, only its count and a note saying so.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from deployer.errors import ConfigError
from deployer.history import Record, undone_run

MIN_RUNS = 3
ROLLBACK_WINDOW = timedelta(hours=24)  # a manual rollback this soon after a deploy fails it
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_SINCE = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_since(text: str) -> timedelta:
    """`30d`, `12h`, `4w`."""
    match = _SINCE.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(
            f"--since must be a whole number of hours, days or weeks (12h, 30d, 4w), not {text!r}"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, _TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class RunView:
    """One run merged over the hosts that recorded it. `result` is the fleet's verdict: any
    host reverted automatically makes it `rolled_back`, else any failure (or interruption)
    `failed`, else `success`."""

    run_id: str
    action: str
    release: str
    result: str
    ended: datetime  # the latest host's end
    started: datetime | None = None  # the earliest recorded start
    committed: datetime | None = None
    undid: str | None = None  # rollback: the deploy run it took back
    drill: Mapping[str, Any] | None = None


def merge_runs(by_host: Mapping[str, Sequence[Record]]) -> list[RunView]:
    """Every host's records as runs, by end time. Records whose time cannot be read are
    left out. A rollback written before `undid` existed gets it from the host's history."""
    parts: dict[tuple[str, str], list[Record]] = {}
    undid: dict[tuple[str, str], str] = {}
    for records in by_host.values():
        for index, r in enumerate(records):
            key = (r.run_id or f"{r.time}/{r.release}", r.action)
            parts.setdefault(key, []).append(r)
            if r.action == "rollback":
                found = r.undid or undone_run(records[:index], r.previous)
                if found:
                    undid.setdefault(key, found)
    views = []
    for (run_id, action), records in parts.items():
        ends = [t for t in (parse_time(r.end) for r in records) if t]
        if not ends:
            continue
        starts = [t for t in (parse_time(r.started) for r in records) if t]
        results = {r.result for r in records}
        if "rolled_back" in results:
            verdict = "rolled_back"
        elif results - {"success"}:
            verdict = "failed"
        else:
            verdict = "success"
        views.append(
            RunView(
                run_id=run_id,
                action=action,
                release=records[0].release,
                result=verdict,
                ended=max(ends),
                started=min(starts) if starts else None,
                committed=next((parse_time(r.committed) for r in records if r.committed), None),
                undid=undid.get((run_id, action)),
                drill=next((r.drill for r in records if r.drill), None),
            )
        )
    return sorted(views, key=lambda v: v.ended)


@dataclass(frozen=True)
class Figure:
    key: str
    value: float | None  # None: no run to compute it from, or too few (see `note`)
    unit: str  # per_day | per_week | seconds | ratio
    runs: int  # how many runs it was computed from
    note: str = ""


@dataclass(frozen=True)
class Stats:
    start: datetime  # the window
    end: datetime
    days: float
    min_runs: int
    figures: tuple[Figure, ...] = field(default_factory=tuple)

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)


def compute(
    views: Sequence[RunView],
    *,
    now: datetime,
    since: timedelta | None = None,
    rollback_window: timedelta = ROLLBACK_WINDOW,
    min_runs: int = MIN_RUNS,
) -> Stats:
    """The four keys over the window: `since` before `now`, or from the first recorded run
    (at least one day). A run belongs to the window by its end."""
    first = min((v.started or v.ended for v in views), default=now)
    start = now - since if since else min(first, now - timedelta(days=1))
    days = (now - start).total_seconds() / 86400
    inside = [v for v in views if start <= v.ended <= now]
    deploys = [v for v in inside if v.action == "deploy"]
    good = [v for v in deploys if v.result == "success"]

    def figure(key: str, value: float | None, unit: str, runs: int, what: str) -> Figure:
        if runs == 0:
            return Figure(key, None, unit, 0, f"no {what} in the window")
        if runs < min_runs:
            return Figure(key, None, unit, runs, f"too few {what} ({runs}, need {min_runs})")
        return Figure(key, value, unit, runs)

    leads = [(v.ended - v.committed).total_seconds() for v in good if v.committed]
    failed = _failed_changes(deploys, views, rollback_window)
    restores = _restores(deploys, views, failed)
    drills = [v.drill for v in inside if v.action == "drill" and v.drill]
    drill_restore = [float(d["restore"]) for d in drills if _number(d.get("restore"))]
    drill_forward = [float(d["forward"]) for d in drills if _number(d.get("forward"))]
    lead_note = f"{len(good) - len(leads)} deploy(s) without a commit time" if good else ""
    figures = (
        figure("deploys_per_day", len(good) / days, "per_day", len(good), "successful deploys"),
        figure(
            "deploys_per_week", len(good) / days * 7, "per_week", len(good), "successful deploys"
        ),
        _with_note(
            figure(
                "lead_time", _median(leads), "seconds", len(leads), "deploys with a commit time"
            ),
            lead_note if len(leads) < len(good) else "",
        ),
        figure(
            "change_failure_rate",
            len(failed) / len(deploys) if deploys else None,
            "ratio",
            len(deploys),
            "deploys",
        ),
        figure("time_to_restore", _median(restores), "seconds", len(restores), "restores"),
        figure("drill_restore", _median(drill_restore), "seconds", len(drill_restore), "drills"),
        figure("drill_forward", _median(drill_forward), "seconds", len(drill_forward), "drills"),
    )
    return Stats(start, now, days, min_runs, figures)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _with_note(figure: Figure, note: str) -> Figure:
    if not note or figure.note:
        return figure
    return Figure(figure.key, figure.value, figure.unit, figure.runs, note)


def _failed_changes(
    deploys: Sequence[RunView], views: Sequence[RunView], window: timedelta
) -> dict[str, RunView | None]:
    """Deploys that failed, were reverted automatically, or were rolled back by hand within
    `window` of their end: run id -> the rollback that undid it (None if none)."""
    undone = {v.undid: v for v in views if v.action == "rollback" and v.result == "success"}
    out: dict[str, RunView | None] = {}
    for d in deploys:
        rollback = undone.get(d.run_id)
        if d.result != "success":
            out[d.run_id] = None
        elif rollback is not None and rollback.ended - d.ended <= window:
            out[d.run_id] = rollback
    return out


def _restores(
    deploys: Sequence[RunView], views: Sequence[RunView], failed: Mapping[str, RunView | None]
) -> list[float]:
    """Seconds from the start of each failed change (its end, for records without a start) to
    the end of the run that put the fleet back on a healthy release: the deploy's own end for
    an automatic revert, the rollback's for a manual one, the next successful deploy or
    rollback for a failed one (none yet: not counted)."""
    out = []
    for d in deploys:
        if d.run_id not in failed:
            continue
        began = d.started or d.ended
        rollback = failed[d.run_id]
        if d.result == "rolled_back":
            restored: datetime | None = d.ended
        elif rollback is not None:
            restored = rollback.ended
        else:
            restored = next(
                (
                    v.ended
                    for v in views
                    if v.ended > d.ended
                    and v.result == "success"
                    and v.action in ("deploy", "rollback")
                ),
                None,
            )
        if restored is not None:
            out.append((restored - began).total_seconds())
    return out


# ------------------------------------------------------------------------------ rendering

LABELS = {
    "deploys_per_day": "deployment frequency",
    "deploys_per_week": "",
    "lead_time": "lead time for changes",
    "change_failure_rate": "change failure rate",
    "time_to_restore": "time to restore",
    "drill_restore": "drill: time to restore",
    "drill_forward": "drill: time to roll forward",
}
HELP = {
    "deploys_per_day": "Successful deploys per day over the window.",
    "deploys_per_week": "Successful deploys per week over the window.",
    "lead_time": "Median seconds from the release's commit to the deploy that made it live.",
    "change_failure_rate": "Share of deploys that failed, were reverted or rolled back.",
    "time_to_restore": "Median seconds from a failed change to the next healthy release.",
    "drill_restore": "Median seconds a rollback drill took to restore the previous release.",
    "drill_forward": "Median seconds a rollback drill took to roll forward again.",
}


def _amount(figure: Figure) -> str:
    value = figure.value
    if value is None:
        return figure.note
    if figure.unit == "ratio":
        return f"{value * 100:.0f}%"
    if figure.unit == "seconds":
        return "median " + _duration(value)
    return f"{value:.2f} {figure.unit.replace('_', ' ')}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


def render_text(stats: Stats, env: str) -> str:
    lines = [
        f"delivery metrics for {env}: {stats.start:%Y-%m-%d %H:%M} to {stats.end:%Y-%m-%d %H:%M}"
        f" UTC ({stats.days:.1f} days)"
    ]
    for f in stats.figures:
        if f.key == "deploys_per_week":  # on the per-day line: the same runs
            continue
        amount = _amount(f)
        if f.key == "deploys_per_day" and f.value is not None:
            amount += ", " + _amount(stats.figure("deploys_per_week"))
        elif f.value is not None and f.note:
            amount += f"; {f.note}"
        runs = f"({f.runs} run{'s' if f.runs != 1 else ''})"
        lines.append(f"  {LABELS[f.key]:<28} {amount}  {runs}")
    return "\n".join(lines) + "\n"


def render_json(stats: Stats, env: str) -> str:
    return json.dumps(
        {
            "env": env,
            "window": {
                "from": stats.start.strftime(_TIME),
                "to": stats.end.strftime(_TIME),
                "days": round(stats.days, 6),
            },
            "min_runs": stats.min_runs,
            "figures": {
                f.key: {k: v for k, v in asdict(f).items() if k != "key"} for f in stats.figures
            },
        },
        indent=2,
    )


def render_prometheus(stats: Stats, env: str) -> str:
    """The text exposition format (node_exporter's textfile collector, a pushgateway). A
    figure without a value is left out (absent, not zero); its run count is always there."""
    label = f'env="{_escape(env)}"'
    out = []
    for f in stats.figures:
        name = f"deployer_{f.key}" + ("_seconds" if f.unit == "seconds" else "")
        out += [f"# HELP {name} {HELP[f.key]}", f"# TYPE {name} gauge"]
        if f.value is not None:
            out.append(f"{name}{{{label}}} {_float(f.value)}")
    out += [
        "# HELP deployer_delivery_runs Runs each delivery figure was computed from.",
        "# TYPE deployer_delivery_runs gauge",
    ]
    out += [f'deployer_delivery_runs{{{label},figure="{f.key}"}} {f.runs}' for f in stats.figures]
    out += [
        "# HELP deployer_delivery_window_days Length of the window the figures cover.",
        "# TYPE deployer_delivery_window_days gauge",
        f"deployer_delivery_window_days{{{label}}} {_float(stats.days)}",
    ]
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _float(value: float) -> str:
    return repr(float(value))
