"""The benchmark's pure parts (benchmarks/): batching for the restart floor, our batch times
from the JSON events, and RESULTS.md with several apps and transfer modes."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.floors import batches
from benchmarks.projects import Host
from benchmarks.results import floor_of, floors, render
from benchmarks.stream import batch_figures


def test_floor_batches_are_25_percent_rounded_down_like_the_tools() -> None:
    hosts = [Host(f"h{i}", f"127.0.9.{i}") for i in range(1, 21)]
    assert [len(b) for b in batches(hosts[:5])] == [1, 1, 1, 1, 1]
    assert [len(b) for b in batches(hosts[:10])] == [2, 2, 2, 2, 2]
    assert [len(b) for b in batches(hosts)] == [5, 5, 5, 5]
    assert [len(b) for b in batches(hosts, 100)] == [20]


def test_batch_figures_time_each_batch_from_start_to_finish() -> None:
    lines = [
        {"event": "RunStarted", "at": 0.0},
        {"event": "BatchStarted", "index": 1, "at": 10.0},
        {"event": "BatchFinished", "index": 1, "at": 15.5},
        {"event": "BatchStarted", "index": 2, "at": 15.6},
        {"event": "BatchFinished", "index": 2, "at": 21.0},
    ]
    output = "noise\n" + "\n".join(json.dumps(e) for e in lines)
    assert batch_figures(output) == {"batch_s": [5.5, 5.4]}
    assert batch_figures("no events") == {}


def _row(tool: str, scenario: str, wall: float, **extra: Any) -> dict[str, Any]:
    return {
        "app": "django", "tool": tool, "size": 5, "iteration": 0, "scenario": scenario,
        "verified": True, "wall": wall, "bytes_sent": 8_000_000, "store_bytes": 0,
        "sessions_per_host_mean": 4.0, "sessions_per_host_max": 4, "sftp_per_host_mean": 0.0,
        "connections_per_host_mean": 1.0, "peak_rss": 2**26, "peak_pss": 2**25,
        "cpu_tool": 1.5, "cpu_hosts": 9.0, "load_before": 2.0, **extra,
    }  # fmt: skip


def test_results_show_each_tool_above_the_floors_and_our_batches_above_the_floor_batch() -> None:
    app = {
        "title": "Django app",
        "sizes": [5],
        "runs": 1,
        "tree": {"files": 4765, "bytes": 33_000_000, "seed": 1, "changed_file": "v.py"},
        "floor": {"5": [4.0]},
        "restart_floor": {"5": [3.0]},
        "rollout_floor": {"5": [[2.0, 2.0, 2.2, 2.0, 2.0]]},
        "rows": [
            _row("ours", "first", 16.0, batch_s=[2.1, 2.2, 2.3, 2.2, 2.2], archive_bytes=7e6),
            _row("ours", "redeploy", 13.0, batch_s=[2.2] * 5),
            _row("ours", "rollback", 3.5),
            _row("ours-store", "first", 17.0, store_bytes=7_100_000, bytes_sent=7_200_000),
            _row("ansible", "first", 30.0),
        ],
    }
    fl = floors(app, 5)
    assert fl == {"stage": 4.0, "restart": 3.0, "rollout": 10.2, "batch": 2.0, "batches": 5}
    assert floor_of("redeploy", fl) == 14.2 and floor_of("rollback", fl) == 3.0
    record = {
        "command": "bash benchmarks/run --sizes 5",
        "started": "now",
        "runs": 1,
        "modes": ["ssh", "store"],
        "machine": {"cpus (nproc)": "2"},
        "versions": {},
        "apps": {"django": app},
    }
    text = render(record)
    assert "| first | 5 | 14.20 | +1.80 (1.13×) | +2.80 (1.20×) | +15.80 (2.11×) |" in text
    assert "| first | 5 | ours | 5 | 2.20 (2.30) | 2.00 | +0.20 (+0.30) |" in text
    assert "| django | 5 | ours-store | 7.2 (7.1) | 1.03× | 1.50 | 17.00 |" in text
    assert "| per batch at most 0.3 s above the restart floor (5 hosts, ours, SSH) |" in text


def test_transfer_results_state_the_cpu_growth_per_mode_from_the_smallest_fleet() -> None:
    from benchmarks.transfer import growth

    rows = [
        {"mode": "ssh", "hosts": 5, "cpu_s": 2.0},
        {"mode": "store", "hosts": 5, "cpu_s": 1.6},
        {"mode": "store", "hosts": 20, "cpu_s": 1.7},
        {"mode": "ssh", "hosts": 40, "cpu_s": 6.0},
        {"mode": "store", "hosts": 40, "cpu_s": 1.95},
    ]
    assert growth(rows) == [
        "- ssh: controller CPU +200% from 5 to 40 hosts, 114.3 ms per added host.",
        "- store: controller CPU +22% from 5 to 40 hosts, 10.0 ms per added host.",
    ]
    assert growth([{"mode": "store", "hosts": 5, "cpu_s": 1.0}]) == []
