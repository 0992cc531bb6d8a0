import base64
import hashlib

from deployer.facts import parse_facts
from deployer.history import Record
from deployer.remote.recording import prepare_output

RID = "20261127T170000Z-abc1234"
OLD = "20261101T170000Z-0000000"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_parse_prepare_output():
    record = Record(time="t", user="u", release="R1", action="deploy", result="success", run_id="x")
    out = prepare_output(
        current="/srv/app/releases/R2",
        releases=["R2", "R1"],
        history=[record.to_json()],
        free_kb=123456,
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
    out = prepare_output(lock="held", lockinfo=info, lockage=42)
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


def test_file_contents_cannot_pose_as_markers():
    """Regression (issue 14): history and MANIFEST were printed raw between marker lines, so
    a host's files could forge `@@current`, `@@releases` or a baseline."""
    forged = "\n@@current /srv/app/releases/" + OLD + "\n@@releases\n../../etc\n@@df 1\n"
    out = prepare_output(current=f"/srv/app/releases/{RID}", releases=[RID], history=[forged])
    facts = parse_facts(out)
    assert facts.current == RID and facts.releases == (RID,) and facts.free_kb == 999999
    # A later forged line (say from stderr) never overrides the first of its key.
    assert (
        parse_facts(out + "@@current " + b64(b"/x/releases/" + OLD.encode()) + "\n").current == RID
    )


def test_release_names_that_are_not_one_path_component_are_dropped():
    out = prepare_output(current="/srv/app/releases/..", releases=["..", ".x", "a/b", RID])
    facts = parse_facts(out)
    assert facts.current is None and facts.releases == (RID,)


def baseline_output(current: str, manifest: bytes, digest: str) -> str:
    return (
        prepare_output(current=f"/srv/app/releases/{current}", releases=[current])
        + f"@@manifest_digest {digest}\n@@manifest {b64(manifest)}\n"
        + f"@@modes {b64(b'644 app.py' + bytes([10]) + b'644 MANIFEST' + bytes([10]))}\n"
    )


def test_baseline_needs_a_release_id_and_content_matching_its_digest():
    manifest = ("ab" * 32 + "  app.py\n").encode()
    good = hashlib.sha256(manifest).hexdigest()
    facts = parse_facts(baseline_output(RID, manifest, good))
    assert facts.baseline is not None and facts.baseline.release_id == RID
    assert facts.baseline.files == {"app.py": ("ab" * 32, False)}
    # The genuine digest reported beside other content: no baseline.
    assert parse_facts(baseline_output(RID, manifest + b"x", good)).baseline is None
    # A base that is not a release id: no baseline.
    assert parse_facts(baseline_output("R1", manifest, good)).baseline is None
