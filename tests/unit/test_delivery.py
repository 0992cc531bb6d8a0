"""Delivery metrics (the four DORA keys) from history records, against figures computed by
hand in the comments; and the new record fields read alongside records written before them."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from deployer.delivery import (
    compute,
    merge_runs,
    parse_since,
    render_json,
    render_prometheus,
    render_text,
)
from deployer.errors import ConfigError
from deployer.history import Record, parse_records, release_stack, rollback_target, runs

NOW = datetime(2026, 3, 31, 12, 0, 0, tzinfo=UTC)


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0) -> str:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deploy(run, release, started, ended, result="success", committed=None, previous=None):
    return Record(
        time=ended,
        user="ci",
        release=release,
        action="deploy",
        result=result,
        run_id=run,
        previous=previous,
        started=started,
        ended=ended,
        committed=committed,
    )


def rollback(run, release, ended, previous, undid=None):
    return Record(
        time=ended,
        user="ops",
        release=release,
        action="rollback",
        result="success",
        run_id=run,
        previous=previous,
        ended=ended,
        undid=undid,
    )


def sequence():
    """Six deploys over March, one automatically reverted, one failed outright, one rolled
    back by hand two hours later; and one drill. Two hosts, the same runs on each."""
    return [
        # d1: committed 1 h before it ended: lead 3600 s.
        deploy("d1", "A", at(2, 9, 50), at(2, 10), committed=at(2, 9)),
        # d2: committed 2 h before: lead 7200 s.
        deploy("d2", "B", at(5, 9, 55), at(5, 10), committed=at(5, 8), previous="A"),
        # d3: health failed, reverted automatically: restore = 10:04 - 10:00 = 240 s.
        deploy("d3", "C", at(9, 10), at(9, 10, 4), result="rolled_back", previous="B"),
        # d4: live, then rolled back by hand at 12:00: restore = 12:00 - 9:58 = 7320 s.
        deploy("d4", "D", at(12, 9, 58), at(12, 10), committed=at(12, 9, 30), previous="B"),
        rollback("r1", "B", at(12, 12), previous="D"),  # undid: from the history (old record)
        # d5: failed outright (staging); the next healthy release is d6 at 16:10:
        # restore = 16:10 - 14:59 (its start) = 90660 s.
        deploy("d5", "E", at(15, 14, 59), at(15, 15), result="failed", previous="B"),
        # d6: committed 3 h before: lead 10800 s.
        deploy("d6", "F", at(16, 16, 5), at(16, 16, 10), committed=at(16, 13, 10), previous="B"),
        Record(
            time=at(20),
            user="ops",
            release="F",
            action="drill",
            result="success",
            run_id="x1",
            previous="F",
            started=at(20, 9, 59),
            ended=at(20),
            drill={"target": "B", "restore": 4.5, "hold": 30.0, "forward": 3.5},
        ),
    ]


def test_four_keys_over_a_scripted_sequence_equal_the_hand_computation():
    views = merge_runs({"web1": sequence(), "web2": sequence()})
    assert [v.run_id for v in views] == ["d1", "d2", "d3", "d4", "r1", "d5", "d6", "x1"]
    assert next(v for v in views if v.run_id == "r1").undid == "d4"
    stats = compute(views, now=NOW, since=timedelta(days=30))
    # Successful deploys: d1 d2 d4 d6 = 4 in 30 days.
    assert stats.figure("deploys_per_day").value == pytest.approx(4 / 30)
    assert stats.figure("deploys_per_week").value == pytest.approx(4 / 30 * 7)
    assert stats.figure("deploys_per_day").runs == 4
    # Lead times of d1 d2 d4 d6: 3600, 7200, 1800, 10800 -> median (3600 + 7200) / 2.
    lead = stats.figure("lead_time")
    assert (lead.value, lead.runs) == (5400, 4)
    # d3 reverted, d4 rolled back within 24 h, d5 failed: 3 of 6 deploys.
    rate = stats.figure("change_failure_rate")
    assert (rate.value, rate.runs) == (0.5, 6)
    # Restores 240, 7320, 90660 -> median 7320.
    restore = stats.figure("time_to_restore")
    assert (restore.value, restore.runs) == (7320, 3)
    # The drill is apart, and one drill is too few for a median.
    assert stats.figure("drill_restore").value is None
    assert stats.figure("drill_restore").runs == 1
    assert "too few drills (1, need 3)" in stats.figure("drill_restore").note


def test_a_rollback_after_the_window_is_not_a_change_failure():
    views = merge_runs({"web1": sequence()})
    stats = compute(views, now=NOW, since=timedelta(days=30), rollback_window=timedelta(hours=1))
    # d4 was rolled back 2 h after: no longer a failure: d3 and d5, 2 of 6.
    assert stats.figure("change_failure_rate").value == pytest.approx(2 / 6)
    restore = compute(
        views, now=NOW, since=timedelta(days=30), rollback_window=timedelta(hours=1), min_runs=2
    ).figure("time_to_restore")
    assert (restore.value, restore.runs) == ((240 + 90660) / 2, 2)


def test_since_leaves_out_older_runs_and_too_few_runs_say_so():
    stats = compute(merge_runs({"web1": sequence()}), now=NOW, since=timedelta(days=20))
    # From March 11 12:00: d4, d5, d6 (and r1): 2 successful deploys, too few for a rate.
    day = stats.figure("deploys_per_day")
    assert (day.value, day.runs) == (None, 2)
    assert day.note == "too few successful deploys (2, need 3)"
    assert stats.figure("change_failure_rate").value == pytest.approx(2 / 3)
    empty = compute([], now=NOW, since=timedelta(days=7))
    assert empty.figure("lead_time").note == "no deploys with a commit time in the window"


def test_a_run_is_reverted_when_any_host_was_reverted():
    # Batch 1 reverted, batch 2 never switched ("failed" on its hosts): one reverted run.
    web1 = [deploy("d", "X", at(1), at(1, 10, 2), result="rolled_back")]
    web2 = [deploy("d", "X", at(1), at(1, 10, 3), result="failed")]
    (view,) = merge_runs({"web1": web1, "web2": web2})
    assert (view.result, view.ended) == ("rolled_back", datetime(2026, 3, 1, 10, 3, tzinfo=UTC))


def test_renderings_carry_every_figure_and_its_run_count():
    stats = compute(merge_runs({"web1": sequence()}), now=NOW, since=timedelta(days=30))
    data = json.loads(render_json(stats, "prod"))
    assert data["figures"]["lead_time"] == {
        "value": 5400,
        "unit": "seconds",
        "runs": 4,
        "note": "",
    }
    assert data["window"] == {
        "from": "2026-03-01T12:00:00Z",
        "to": "2026-03-31T12:00:00Z",
        "days": 30,
    }
    text = render_text(stats, "prod")
    assert "change failure rate          50%  (6 runs)" in text
    assert "lead time for changes        median 1h30m  (4 runs)" in text
    assert "too few drills (1, need 3)" in text
    prom = render_prometheus(stats, 'pr"od')
    assert 'deployer_lead_time_seconds{env="pr\\"od"} 5400.0' in prom
    assert 'deployer_delivery_runs{env="pr\\"od",figure="drill_restore"} 1' in prom
    # A figure without a value is absent, not zero.
    assert "deployer_drill_restore_seconds{" not in prom
    assert "# TYPE deployer_change_failure_rate gauge" in prom


def test_parse_since():
    assert parse_since("30d") == timedelta(days=30)
    assert parse_since("12h") == timedelta(hours=12)
    assert parse_since("2w") == timedelta(days=14)
    for bad in ("30", "0d", "1y", "-3d"):
        with pytest.raises(ConfigError):
            parse_since(bad)


OLD_FORMAT = [
    # Written before started/ended/committed/undid/drill existed.
    '{"action":"deploy","previous":null,"release":"A","result":"success","run_id":"d1",'
    '"time":"2026-03-02T10:00:00Z","user":"ci"}',
    '{"action":"deploy","previous":"A","release":"B","result":"success","run_id":"d2",'
    '"time":"2026-03-03T10:00:00Z","user":"ci"}',
    '{"action":"rollback","previous":"B","release":"A","result":"success","run_id":"r1",'
    '"time":"2026-03-03T11:00:00Z","user":"ops"}',
]


def test_old_format_records_are_read_and_keep_their_shape():
    records = parse_records(OLD_FORMAT)
    assert [r.end for r in records] == [
        "2026-03-02T10:00:00Z",
        "2026-03-03T10:00:00Z",
        "2026-03-03T11:00:00Z",
    ]
    assert all(r.started is None and r.committed is None and r.undid is None for r in records)
    # Written again, an old record is byte for byte what it was.
    assert [r.to_json() for r in records] == OLD_FORMAT
    views = merge_runs({"web1": records})
    assert views[-1].undid == "d2"  # derived from the history before it
    stats = compute(views, now=NOW, since=timedelta(days=30), min_runs=1)
    assert stats.figure("change_failure_rate").value == 0.5
    # No start recorded: the restore counts from d2's end: 1 h.
    assert stats.figure("time_to_restore").value == 3600
    assert stats.figure("lead_time").runs == 0


def test_new_fields_round_trip():
    record = sequence()[-1]
    (back,) = parse_records([record.to_json()])
    assert back == record
    assert json.loads(record.to_json())["drill"]["target"] == "B"


def test_a_drill_leaves_the_rollback_stack_alone_unless_it_ended_on_its_target():
    base = [deploy("d1", "A", at(1), at(1)), deploy("d2", "B", at(2), at(2), previous="A")]
    done = Record(at(3), "u", "B", "drill", "success", "x", previous="B", drill={"target": "A"})
    assert release_stack([*base, done]) == ["A", "B"]
    assert rollback_target([*base, done], "B") == "A"
    stuck = Record(at(3), "u", "A", "drill", "failed", "x", previous="B", drill={"target": "A"})
    assert release_stack([*base, stuck]) == ["A"]
    (run,) = [r for r in runs({"web1": [*base, done]}) if r.action == "drill"]
    assert run.drill == {"target": "A"}
