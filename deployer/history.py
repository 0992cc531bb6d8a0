"""The per-host deploy history and what it decides: which release is live-worthy, which one a
rollback goes to, and which releases may be pruned.

Order comes only from the order of records in the history file (fault 20): never from file
times, the local clock or time zones. Each record is one JSON object on one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# "traffic": a blue-green load balancer now sends traffic to `color` (which runs `release`).
# "drill": a rehearsed rollback and roll-forward (`deployer.drill`); `release` is where the
# host ended, `previous` where it began, `drill` holds the target and the timings.
ACTIONS = ("deploy", "rollback", "flags", "traffic", "drill")
RESULTS = ("success", "failed", "rolled_back")
# Fields added for delivery metrics (`deployer.delivery`). Records written before them lack
# them, and a record that has no value for one keeps its old shape (the key is left out).
OPTIONAL = ("color", "started", "ended", "committed", "undid", "drill")


@dataclass(frozen=True)
class Record:
    time: str  # UTC ISO-8601, informational only
    user: str
    release: str
    action: str  # deploy | rollback
    result: str  # success | failed | rolled_back
    run_id: str
    previous: str | None = None  # release current pointed at before this action
    # Blue-green: the host's color on a deploy record; the color now live on a traffic record.
    color: str | None = None
    started: str | None = None  # UTC ISO-8601: when the run began (this machine's clock)
    ended: str | None = None  # when the run ended on this host (old records: see `end`)
    committed: str | None = None  # deploy: the commit time of the REVISION's commit (git)
    undid: str | None = None  # rollback: the run id of the deploy it took back
    drill: Mapping[str, Any] | None = None  # drill: target and seconds of each leg

    @property
    def end(self) -> str:
        """When the run ended: `ended`, or for older records `time`, which every flow writes
        at its finish step."""
        return self.ended or self.time

    def to_json(self) -> str:
        data = asdict(self)
        for key in OPTIONAL:
            if data[key] is None:  # records keep their exact old shape
                del data[key]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_records(lines: Iterable[str]) -> list[Record]:
    """Parse history lines, skipping lines that are not records (a torn last line, say)."""
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
            records.append(
                Record(
                    time=str(data.get("time", "")),
                    user=str(data.get("user", "")),
                    release=str(data["release"]),
                    action=str(data["action"]),
                    result=str(data["result"]),
                    run_id=str(data.get("run_id", "")),
                    previous=data.get("previous"),
                    color=data.get("color"),
                    started=_text(data.get("started")),
                    ended=_text(data.get("ended")),
                    committed=_text(data.get("committed")),
                    undid=_text(data.get("undid")),
                    drill=data["drill"] if isinstance(data.get("drill"), dict) else None,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return records


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def undone_run(records: Sequence[Record], current: str | None) -> str | None:
    """The run a rollback from `current` takes back: the last successful deploy of it."""
    for record in reversed(records):
        if record.action == "deploy" and record.release == current and record.result == "success":
            return record.run_id or None
    return None


def release_stack(records: Sequence[Record]) -> list[str]:
    """Releases that went live successfully, oldest first, as a stack of undo steps.

    A successful deploy pushes its release; a successful rollback pops back to its target.
    So after deploy A, deploy B, rollback (to A), the stack is [A] and a further rollback
    has no target, as an operator would expect of "undo".
    """
    stack: list[str] = []
    for record in records:
        if record.action == "drill":
            # A drill that ended where it began changes nothing; one that ended on its
            # target (its roll-forward failed) left the host as a rollback would.
            if record.release != record.previous and record.release in stack:
                del stack[stack.index(record.release) + 1 :]
            continue
        if record.result != "success":
            continue
        if record.action == "deploy":
            if record.release in stack:
                stack.remove(record.release)
            stack.append(record.release)
        elif record.action == "rollback":
            if record.release in stack:
                del stack[stack.index(record.release) + 1 :]
            else:
                stack.append(record.release)
    return stack


def rollback_target(records: Sequence[Record], current: str | None) -> str | None:
    """The release a rollback returns to: the one below `current` on the stack."""
    stack = release_stack(records)
    if current in stack:
        index = stack.index(current)
        return stack[index - 1] if index > 0 else None
    return stack[-1] if stack else None


def releases_to_prune(
    present: Sequence[str],
    records: Sequence[Record],
    *,
    keep: int,
    current: str | None,
    protect: Iterable[str] = (),
) -> list[str]:
    """Releases on disk that may be deleted: everything except the newest `keep` successful
    releases (by history order), the current release, its rollback target, and `protect`.
    Releases the history never mentions as successful (failed or foreign) are pruned too,
    unless protected."""
    stack = release_stack(records)
    keep_set = set(stack[-keep:]) if keep > 0 else set()
    keep_set.update(p for p in protect if p)
    if current:
        keep_set.add(current)
        target = rollback_target(records, current)
        if target:
            keep_set.add(target)
    return [r for r in present if r not in keep_set]


def recorded_live_color(records: Sequence[Record]) -> str | None:
    """Blue-green: the color the last successful traffic switch in these records went to."""
    for record in reversed(records):
        if record.action == "traffic" and record.result == "success" and record.color:
            return record.color
    return None


@dataclass(frozen=True)
class Run:
    """One run as the hosts recorded it (the audit view, `invoke history`): a deploy, a
    rollback, a flags push or a traffic switch, with each host's result."""

    run_id: str
    time: str  # the earliest of its records' times (the deploying machine's clock)
    user: str
    action: str
    release: str
    results: dict[str, str]  # host -> result, in the order the hosts were given
    drill: Mapping[str, Any] | None = None  # a drill's target and timings (first host's)


def runs(by_host: Mapping[str, Sequence[Record]]) -> list[Run]:
    """Every host's records merged into runs, oldest first. A run is its run id and action
    (a blue-green deploy also records its traffic switch under the same id). Merging across
    hosts needs an order, so this one (for people, never for decisions) sorts by recorded
    time; runs recorded at the same second keep the order they were first seen in."""
    found: dict[tuple[str, str], Run] = {}
    for host, records in by_host.items():
        for r in records:
            key = (r.run_id or f"{r.time}/{r.release}", r.action)
            run = found.get(key)
            if run is None:
                run = found[key] = Run(r.run_id, r.time, r.user, r.action, r.release, {}, r.drill)
            elif r.time and (not run.time or r.time < run.time):
                found[key] = run = Run(
                    run.run_id, r.time, run.user, r.action, r.release, run.results, run.drill
                )
            run.results[host] = r.result
    return sorted(found.values(), key=lambda run: run.time)
