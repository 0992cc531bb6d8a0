"""The Invoke task `history`: the runs the hosts recorded, or with --stats the delivery
metrics computed from them. Parses options, calls `deployer.api`, prints, maps errors to exit
codes. Wired into the root collection in deployer/tasks.py."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deployer import api
from deployer.taskkit import echo, handles_errors, help_for, load

if TYPE_CHECKING:
    from deployer.history import Run

__all__ = ["history"]


@task(
    help=help_for(
        "env",
        "limit",
        "accept_new_host_keys",
        "playbook",
        last="how many runs to show, newest last (default 20; 0: all the hosts keep)",
        format="text (default) or json; with --stats also prometheus",
        stats="delivery metrics (the four DORA keys) instead of the runs",
        since="with --stats: only runs that ended this recently: 12h, 30d, 4w",
        rollback_window="with --stats: a rollback this long after a deploy fails it (24h)",
    )
)
@handles_errors
def history(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    last: int = 20,
    format: str = "text",
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
    stats: bool = False,
    since: str | None = None,
    rollback_window: str = "24h",
) -> None:
    """Who deployed, rolled back or drilled, when, with each host's result; --stats: DORA keys.

    Read from the hosts' own records. With --stats: deployment frequency, lead time, change
    failure rate and time to restore computed from them (text, json or prometheus)."""
    loaded = load(env, limit=limit, playbook=playbook)
    if stats:
        _print_stats(loaded, format, accept_new_host_keys, since, rollback_window)
        return
    found, errors = api.history(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    shown = found[-last:] if last > 0 else found
    if format == "json":
        data = {"runs": [dataclasses.asdict(r) for r in shown], "unreachable": errors}
        print(json.dumps(data, indent=2))
    else:
        for run in shown:
            echo(_history_line(run))
        for host, error in errors.items():
            echo(f"{host}: UNREACHABLE  {error.splitlines()[0]}")
    if errors:
        raise Exit(code=5)  # as status: what is shown misses those hosts


def _print_stats(
    loaded: api.Loaded, format: str, accept: bool, since: str | None, window: str
) -> None:
    # here: only `history --stats` needs the delivery figures
    from deployer.delivery import parse_since, render_json, render_prometheus, render_text

    render = {"text": render_text, "json": render_json, "prometheus": render_prometheus}
    if format not in render:
        raise Exit(f"error: --format must be text, json or prometheus, not {format!r}", code=2)
    stats, errors = api.delivery_stats(
        loaded,
        api.Options(accept_new_host_keys=accept),
        since=parse_since(since) if since else None,
        rollback_window=parse_since(window),
    )
    print(render[format](stats, loaded.env), end="" if format != "json" else "\n")
    for host, error in errors.items():
        print(f"{host}: UNREACHABLE  {error.splitlines()[0]}", file=sys.stderr)
    if errors:
        raise Exit(code=5)  # the figures miss those hosts' records


def _history_line(run: Run) -> str:
    by_result: dict[str, list[str]] = {}
    for host, result in run.results.items():
        by_result.setdefault(result, []).append(host)
    outcome = "; ".join(
        f"{result} on {' '.join(hosts) if len(hosts) <= 6 else f'{len(hosts)} hosts'}"
        for result, hosts in by_result.items()
    )
    drill = ""
    if run.drill:  # to the target and back, with each leg's seconds
        legs = ", ".join(
            f"{leg} {run.drill[leg]:.1f}s"
            for leg in ("restore", "hold", "forward")
            if leg in run.drill
        )
        drill = f"  [to {run.drill.get('target', '?')} and back: {legs}]"
    return (
        f"{run.time or '-':<20}  {run.user or '-':<12} {run.action:<8}  {run.release}  {outcome}"
        f"{drill}  (run {run.run_id or '-'})"
    )
