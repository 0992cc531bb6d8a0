"""Reading `batch_overhead`'s deploys from their JSON events, pure: each batch's times
(switch start to last host healthy, and that minus the app's own restart), every host's
finish step, and a traced finish script's timeline against the controller's events."""

from __future__ import annotations

from typing import Any


def our_batches(
    evs: list[dict[str, Any]], times: dict[str, tuple[float, float]]
) -> list[dict[str, float]]:
    """Per batch: switch start -> last host healthy, and BatchStarted -> BatchFinished; and
    ours minus the app's own part: (switch start -> last healthy) - (first restart began ->
    last bound), which the app's start-up time drops out of."""
    rows: list[dict[str, float]] = []
    started: dict[int, float] = {}
    hosts: dict[int, set[str]] = {}
    for e in evs:
        if e.get("event") == "BatchStarted":
            started[e["index"]] = e["at"]
            hosts[e["index"]] = set(e["hosts"])
    for index, names in sorted(hosts.items()):
        switch = [
            e["at"]
            for e in evs
            if e.get("event") == "StepStarted" and e["step"] == "switch" and e["host"] in names
        ]
        switched = [
            e
            for e in evs
            if e.get("event") == "StepFinished" and e["step"] == "switch" and e["host"] in names
        ]
        healthy = [
            e for e in evs if e.get("event") == "HealthChecked" and e["host"] in names and e["ok"]
        ]
        finished = [
            e["at"] for e in evs if e.get("event") == "BatchFinished" and e["index"] == index
        ]
        began = min(times[n][0] for n in names)
        bound = max(times[n][1] for n in names)
        rows.append(
            {
                "switch_to_healthy": max(e["at"] for e in healthy) - min(switch),
                "app_restart_to_bound": bound - began,
                "above_app": (max(e["at"] for e in healthy) - min(switch)) - (bound - began),
                "switch_to_restart": began - min(switch),
                "bound_to_healthy": max(e["at"] for e in healthy) - bound,
                "batch": finished[0] - started[index],
                "switch_step_max": max(e["duration"] for e in switched),
                "attempts_max": max(e["attempts"] for e in healthy),
            }
        )
    return rows


def finish_steps(evs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every host's finish step, and the controller's time around it."""
    durations = [
        e["duration"] for e in evs if e.get("event") == "StepFinished" and e["step"] == "finish"
    ]
    starts = [e["at"] for e in evs if e.get("event") == "StepStarted" and e["step"] == "finish"]
    last_batch = max(e["at"] for e in evs if e.get("event") == "BatchFinished")
    run_end = max(e["at"] for e in evs if e.get("event") == "RunFinished")
    return {
        "finish_min": round(min(durations), 3),
        "finish_max": round(max(durations), 3),
        "last_batch_to_first_finish": round(min(starts) - last_batch, 3),
        "last_batch_to_run_finished": round(run_end - last_batch, 3),
    }


def trace_summary(
    evs: list[dict[str, Any]], traces: dict[str, list[tuple[float, str]]]
) -> dict[str, Any]:
    """Per host: controller's StepStarted -> bash started, the script's own time, its slowest
    command, and bash's end -> the controller's StepFinished."""
    started = {
        e["host"]: e["at"] for e in evs if e.get("event") == "StepStarted" and e["step"] == "finish"
    }
    ended = {
        e["host"]: e["at"]
        for e in evs
        if e.get("event") == "StepFinished" and e["step"] == "finish"
    }
    per_host = {}
    for host, lines in traces.items():
        if not lines or host not in started:
            continue
        gaps = [(b[0] - a[0], a[1]) for a, b in zip(lines, lines[1:], strict=False)]
        slowest = max(gaps, default=(0.0, ""))
        per_host[host] = {
            "to_bash": round(lines[0][0] - started[host], 3),
            "script": round(lines[-1][0] - lines[0][0], 3),
            "slowest": [round(slowest[0], 3), slowest[1]],
            "after": round(ended[host] - lines[-1][0], 3),
        }
    worst = max(per_host.values(), key=lambda v: v["to_bash"] + v["script"] + v["after"])
    return {"hosts_traced": len(per_host), "worst_host": worst}
