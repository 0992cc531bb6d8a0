from deployer.facts import parse_facts
from deployer.history import Record


def test_parse_prepare_output():
    record = Record(time="t", user="u", release="R1", action="deploy", result="success", run_id="x")
    out = "\n".join(
        [
            "@@lock acquired",
            "@@current /srv/app/releases/R2",
            "@@releases",
            "R2",
            "R1",
            "@@history",
            record.to_json(),
            "@@df 123456",
            "@@end",
        ]
    )
    facts = parse_facts(out)
    assert facts.lock_acquired and facts.lock_holder is None
    assert facts.current == "R2"
    assert facts.releases == ("R1", "R2")
    assert [r.release for r in facts.history] == ["R1"]
    assert facts.free_kb == 123456


def test_parse_lock_holder():
    info = (
        '{"user": "ann", "from": "laptop", "release": "R9", "run_id": "abc",'
        ' "started": "2026-11-27T10:00:00Z"}'
    )
    out = f"@@lock held\n@@lockinfo {info}\n@@lockage 42\n"
    facts = parse_facts(out)
    assert not facts.lock_acquired
    assert facts.lock_holder is not None
    text = facts.lock_holder.describe()
    assert "ann@laptop" in text and "R9" in text and "42s ago" in text
    assert facts.current is None


def test_a_rollback_lock_without_a_target_reads_rollback_not_rollback_of_none() -> None:
    from deployer.facts import LockHolder

    holder = LockHolder({"user": "ann", "from": "ci", "action": "rollback", "release": None}, 5)
    assert "(rollback, run ?)" in holder.describe()
    assert "None" not in holder.describe()


def test_foreign_entries_and_unremovable_releases_are_parsed() -> None:
    facts = parse_facts(
        "@@current /srv/app/releases/R2\n@@releases\nR1\nR2\n"
        "@@foreign directory\t.current.tmp\n@@foreign file\tnotes.txt\n"
        "@@unremovable R1\troot\t__pycache__\n@@end\n"
    )
    assert facts.releases == ("R1", "R2")
    assert facts.foreign == (("directory", ".current.tmp"), ("file", "notes.txt"))
    assert [(u.release, u.owner, u.path) for u in facts.unremovable] == [
        ("R1", "root", "__pycache__")
    ]
