"""Release order comes from the history's record order only (fault 20)."""

from deployer.history import (
    Record,
    parse_records,
    release_stack,
    releases_to_prune,
    rollback_target,
)


def rec(release, action="deploy", result="success", time="2026-01-01T00:00:00Z"):
    return Record(time=time, user="u", release=release, action=action, result=result, run_id="r")


def test_stack_ignores_failures_and_pops_on_rollback():
    history = [rec("A"), rec("B"), rec("C", result="failed"), rec("C", result="rolled_back")]
    assert release_stack(history) == ["A", "B"]
    history.append(rec("A", action="rollback"))
    assert release_stack(history) == ["A"]


def test_rollback_target_is_the_one_below_current():
    history = [rec("A"), rec("B"), rec("C")]
    assert rollback_target(history, "C") == "B"
    assert rollback_target(history, "A") is None
    assert rollback_target([], "A") is None


def test_order_comes_from_records_not_timestamps_or_names():
    # A clock that went backwards and names that sort the other way change nothing.
    history = [rec("z-old", time="2030-01-01T00:00:00Z"), rec("a-new", time="1999-01-01T00:00:00Z")]
    assert rollback_target(history, "a-new") == "z-old"


def test_prune_keeps_newest_successful_current_and_target():
    history = [rec(r) for r in ("A", "B", "C", "D")]
    present = ["A", "B", "C", "D", "X-failed"]
    assert releases_to_prune(present, history, keep=2, current="D") == ["A", "B", "X-failed"]
    # After rolling back to B, B's own target (A) is protected even with keep=1.
    history.append(rec("B", action="rollback"))
    assert releases_to_prune(present, history, keep=1, current="B") == ["C", "D", "X-failed"]


def test_parse_skips_torn_lines():
    lines = [rec("A").to_json(), '{"release": "B", "act', "", rec("C").to_json()]
    assert [r.release for r in parse_records(lines)] == ["A", "C"]


def run_rec(run_id, time, release, result="success", action="deploy", user="alice"):
    return Record(
        time=time, user=user, release=release, action=action, result=result, run_id=run_id
    )


def test_runs_merge_every_hosts_records_by_run_oldest_first():
    from deployer.history import runs

    web1 = [
        run_rec("a", "2026-01-01T10:00:01Z", "R1"),
        run_rec("b", "2026-01-02T09:00:00Z", "R2", user="ci"),
        run_rec("c", "2026-01-02T09:05:00Z", "R1", action="rollback"),
    ]
    web2 = [
        run_rec("a", "2026-01-01T10:00:00Z", "R1"),  # this host recorded run a a second sooner
        run_rec("b", "2026-01-02T09:00:02Z", "R2", result="rolled_back", user="ci"),
        # a blue-green deploy also records its traffic switch under the same run id
        run_rec("b", "2026-01-02T09:00:03Z", "R2", action="traffic", user="ci"),
    ]
    merged = runs({"web1": web1, "web2": web2})
    assert [(r.run_id, r.action, r.time, r.user) for r in merged] == [
        ("a", "deploy", "2026-01-01T10:00:00Z", "alice"),
        ("b", "deploy", "2026-01-02T09:00:00Z", "ci"),
        ("b", "traffic", "2026-01-02T09:00:03Z", "ci"),
        ("c", "rollback", "2026-01-02T09:05:00Z", "alice"),
    ]
    assert merged[0].results == {"web1": "success", "web2": "success"}
    assert merged[1].results == {"web1": "success", "web2": "rolled_back"}
    assert merged[2].results == {"web2": "success"}
    assert merged[3].results == {"web1": "success"}
    assert runs({}) == []
