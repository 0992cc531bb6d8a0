"""Feature flags without hosts: the file's validation, the in-place YAML edit, the pushed
document and remote scripts, the runtime helper (bucketing, allow-list, reload), and the
push orchestration over a recording transport."""

from __future__ import annotations

import ast
import base64
import json
import os
import threading
from pathlib import Path

import pytest

from deployer import api
from deployer.errors import ConfigError, DeployFailed, LockHeldError
from deployer.flags import runtime
from deployer.flags.edit import set_flag_text
from deployer.flags.model import Flag, FlagState, parse_flags, parse_pushed
from deployer.flags.push import list_flags, set_flag
from deployer.flags.remote import parse_read, read_flags
from deployer.history import Record, parse_records, release_stack, rollback_target
from deployer.remote import scripts
from deployer.remote.recording import RecordingTransport, prepare_output
from deployer.remote.scripts import Layout
from deployer.remote.shell import Script
from deployer.remote.transport import Result

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
# Flags of the test environment.
new-checkout:
  description: The new checkout
  enabled: false   # flipped by flags.set
  percent: 10
  allow:
    - alice
    - bob

dark_mode: {description: Dark, enabled: true}
"""


def parse(text: str):
    return parse_flags(text, "flags/test.yml", "test")


# ------------------------------------------------------------------------- validation


def test_a_valid_file_becomes_frozen_flags_in_file_order() -> None:
    flagset = parse(GOOD)
    assert [f.name for f in flagset.flags] == ["new-checkout", "dark_mode"]
    checkout = flagset.get("new-checkout")
    assert checkout == Flag("new-checkout", "The new checkout", False, 10, ("alice", "bob"))
    assert checkout.line == 2
    assert flagset.get("dark_mode").state == FlagState(True, 100, ())
    with pytest.raises(AttributeError):
        checkout.enabled = True  # type: ignore[misc]


def test_an_empty_file_has_no_flags() -> None:
    assert parse("# nothing yet\n").flags == ()


ON = "a:\n  description: x\n  enabled: true\n"  # a valid flag, to add a bad line to


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ON + "  percnt: 5\n",
            "4: a.percnt: unknown key (allowed: description, enabled, percent, allow)\n"
            "  hint: did you mean 'percent'?",
        ),
        ("a:\n  description: x\n  enabled: yes\n", "3: a.enabled: write true or false, not 'yes'"),
        ("a:\n  description: x\n  enabled: 'true'\n", "3: a.enabled: expected true or false"),
        (ON + "  percent: 101\n", "4: a.percent: must be at most 100, got 101"),
        (ON + "  percent: 2.5\n", "4: a.percent: expected an integer, got 2.5"),
        ("a:\n  enabled: true\n", "1: a: missing required key 'description'"),
        (ON + "  allow: alice\n", "4: a.allow: expected a list"),
        (ON + "  allow: [al, {x: 1}]\n", "4: a.allow[1]: expected a user id"),
        (ON + "  allow:\n    - al\n    - al\n", "6: a.allow[1]: user id 'al' is listed twice"),
        (ON + "new checkout:\n  description: y\n", "4: new checkout: invalid flag name"),
        ("1st: {description: x, enabled: true}\n", "1: 1st: invalid flag name"),
        (ON + "a: {description: y}\n", "4: a: duplicate key (first defined on line 1)"),
        ("a:\n", "1: a: expected a mapping, got nothing"),
        ("- a\n", "1: expected a mapping, got a list"),
        ("a: {description: '', enabled: true}\n", "1: a.description: must not be empty"),
        ("a: [\n", "2: invalid YAML"),
    ],
)
def test_validation_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value).startswith("flags/test.yml:" + message)


def test_unknown_flag_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"no flag 'nope' in flags/test.yml \(flags: new-checkout, dark_mode\)"
    ):
        parse(GOOD).get("nope")


def test_numeric_user_ids_are_text() -> None:
    flag = parse("a:\n  description: x\n  enabled: true\n  allow: [42, alice]\n").get("a")
    assert flag.allow == ("42", "alice")


# -------------------------------------------------------------------- set semantics


def test_set_semantics() -> None:
    flag = parse(GOOD).get("new-checkout")
    assert flag.changed(percent=30).state == FlagState(True, 30, ("alice", "bob"))
    assert flag.changed(on=True).state == FlagState(True, 100, ("alice", "bob"))
    assert flag.changed(on=True).percent == 100  # a percentage in the file becomes 100
    assert parse(GOOD).get("dark_mode").changed(on=True).percent is None
    off = flag.changed(percent=30).changed(off=True)
    assert off.state == FlagState(False, 30, ("alice", "bob"))  # kept for the next --on
    assert flag.changed(allow=["carol", " carol", ""]).allow == ("carol",)
    assert flag.changed(allow=[""]).allow == ()
    with pytest.raises(ConfigError, match="--on and --off cannot be combined"):
        flag.changed(on=True, off=True)
    with pytest.raises(ConfigError, match="--percent must be from 0 to 100, got 120"):
        flag.changed(percent=120)
    with pytest.raises(ConfigError, match="nothing to change"):
        flag.changed()


# --------------------------------------------------------------------- the YAML edit


def edit(text: str, name: str, **change: object) -> str:
    target = parse(text).get(name).changed(**change)  # type: ignore[arg-type]
    return set_flag_text(text, "flags/test.yml", "test", target)


def test_edit_changes_only_the_values_and_keeps_comments() -> None:
    out = edit(GOOD, "new-checkout", percent=30)
    assert out == GOOD.replace("enabled: false   #", "enabled: true   #").replace(
        "percent: 10", "percent: 30"
    )
    assert parse(out).get("new-checkout").state == FlagState(True, 30, ("alice", "bob"))


def test_edit_adds_missing_keys_after_enabled() -> None:
    block = "# top\nx:\n  description: X\n  enabled: false  # note\n  # trailing comment\n"
    out = edit(block, "x", percent=5, allow=["carol", "42", "a b"])
    assert out.splitlines() == [
        "# top",
        "x:",
        "  description: X",
        "  enabled: true  # note",
        '  allow: [carol, "42", "a b"]',
        "  percent: 5",
        "  # trailing comment",
    ]
    assert parse(out).get("x").allow == ("carol", "42", "a b")


def test_edit_flow_mappings_and_a_file_without_final_newline() -> None:
    out = edit(GOOD, "dark_mode", percent=20)
    assert "dark_mode: {description: Dark, enabled: true, percent: 20}" in out
    out = edit("x:\n  description: X\n  enabled: true", "x", off=True, percent=None)
    assert out == "x:\n  description: X\n  enabled: false"
    out = edit("x:\n  description: X\n  enabled: true", "x", allow=["u"])
    assert out == "x:\n  description: X\n  enabled: true\n  allow: [u]"


def test_edit_turns_a_block_allow_list_into_a_flow_list() -> None:
    out = edit(GOOD, "new-checkout", allow=["carol"])
    assert "  allow: [carol]\n\ndark_mode:" in out
    assert parse(out).get("new-checkout").allow == ("carol",)


def test_edit_on_keeps_everything_else_and_is_idempotent() -> None:
    once = edit(GOOD, "new-checkout", on=True)
    assert "percent: 100" in once and "# Flags of the test environment." in once
    assert edit(once, "new-checkout", on=True) == once


# ------------------------------------------------------------- pushed JSON and scripts


def test_pushed_document_is_deterministic_and_round_trips() -> None:
    flagset = parse(GOOD)
    doc = flagset.to_json()
    assert doc == flagset.to_json() and doc.endswith(b"\n")
    assert json.loads(doc) == {
        "env": "test",
        "format": 1,
        "flags": {
            "dark_mode": {"allow": [], "enabled": True, "percent": 100},
            "new-checkout": {"allow": ["alice", "bob"], "enabled": False, "percent": 10},
        },
    }
    assert parse_pushed(doc.decode()) == flagset.states()
    with pytest.raises(ValueError):
        parse_pushed('{"new-checkout": true}')


def test_push_script_writes_beside_then_renames_records_and_unlocks() -> None:
    script = scripts.push_flags(
        Layout("/srv/app"), "run1", content=b'{"flags":{}}\n', history=['{"action":"flags"}']
    )
    assert script.step == "flags"
    assert script.stdin.segments == (b'{"flags":{}}\n',)
    assert script.lines == (
        "echo '@@step flags'",
        "mkdir -p /srv/app/shared /srv/app/.deploy",
        "rm -f /srv/app/shared/.flags.json.tmp-*",
        "head -c 13 > /srv/app/shared/.flags.json.tmp-run1 && "
        '[ "$(stat -c %s /srv/app/shared/.flags.json.tmp-run1)" = 13 ] || '
        "{ rm -f /srv/app/shared/.flags.json.tmp-run1; "
        "echo 'writing /srv/app/shared/flags.json failed (short read or full disk)' >&2; exit 1; }",
        "mv -fT /srv/app/shared/.flags.json.tmp-run1 /srv/app/shared/flags.json",
        "printf '%s\\n' '{\"action\":\"flags\"}' >> /srv/app/.deploy/history.jsonl",
        "if [ -f /srv/app/.deploy/lock/info ]; then held=; IFS= read -r -d '' held <"
        " /srv/app/.deploy/lock/info || true; case $held in *run1*) rm -rf /srv/app/.deploy/lock"
        " ;; esac; fi",
        "echo '@@flags pushed' 13",
    )


def test_read_script_is_read_only_and_parsed() -> None:
    text = read_flags(Layout("/srv/app")).render()
    assert "mkdir" not in text and "rm " not in text and " > " not in text
    out = read_output("/srv/app/releases/R1", '{"flags": {}}\n')
    assert parse_read(out).current == "R1" and parse_read(out).text == '{"flags": {}}\n'
    missing = parse_read(read_output("", None))
    assert missing.current is None and missing.text is None


def read_output(current: str, text: str | None) -> str:
    """What `read_flags` prints: the link's target and the file base64-framed."""

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    flags = "@@flags missing" if text is None else f"@@flags {b64(text)}"
    return f"@@current {b64(current)}\n{flags}\n@@end\n"


# ------------------------------------------------------------------------- history


def test_flag_records_do_not_disturb_rollback_order() -> None:
    def rec(release: str, action: str = "deploy") -> Record:
        return Record("t", "u", release, action, "success", "r")

    plain = [rec("A"), rec("B")]
    with_flags = [rec("A"), rec("A", "flags"), rec("B"), rec("B", "flags"), rec("B", "flags")]
    assert release_stack(with_flags) == release_stack(plain) == ["A", "B"]
    assert rollback_target(with_flags, "B") == "A"
    # A flags record naming a release that never deployed pushes nothing either.
    assert release_stack([rec("A"), rec("", "flags"), rec("Z", "flags")]) == ["A"]
    # And the extra keys a flags record carries parse as a plain record.
    line = json.dumps({**rec("B", "flags").__dict__, "change": "x: on", "flags_sha256": "ab"})
    assert parse_records([line]) == [rec("B", "flags")]


# ------------------------------------------------------------------------- runtime


def write_doc(path: Path, flags: dict[str, dict[str, object]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": 1, "env": "t", "flags": flags}))
    os.replace(tmp, path)  # as the push does: a new inode every time


def users(n: int = 1000) -> list[str]:
    return [f"user-{i}" for i in range(n)]


def test_buckets_are_deterministic_and_monotonic_as_percent_grows() -> None:
    assert runtime.bucket("f", "u1") == runtime.bucket("f", "u1")
    previous: set[str] = set()
    for percent in (0, 1, 10, 20, 50, 99, 100):
        rule = runtime.Rule(True, percent)
        now = {u for u in users() if rule.decide("f", u)}
        assert previous <= now, f"someone lost the flag going to {percent}%"
        assert abs(len(now) - percent * 10) <= 40  # roughly the share asked for
        previous = now
    assert len(previous) == 1000
    # Independent between flags: a user's bucket in one says nothing of another.
    in_f = {u for u in users() if runtime.bucket("f", u) < 50}
    in_g = {u for u in users() if runtime.bucket("g", u) < 50}
    assert in_f != in_g


def test_allow_list_kill_switch_and_anonymous_callers() -> None:
    rule = runtime.Rule(True, 0, frozenset({"alice", "42"}))
    assert rule.decide("f", "alice") and rule.decide("f", 42)
    assert not rule.decide("f", "bob")
    assert not runtime.Rule(False, 100, frozenset({"alice"})).decide("f", "alice")
    assert not runtime.Rule(True, 99).decide("f", None)  # a percentage needs a user
    assert runtime.Rule(True, 100).decide("f", None)


def test_is_enabled_reads_the_file_and_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    assert not runtime.is_enabled("f", "u", path=path)  # no file yet: off
    write_doc(path, {"f": {"enabled": True, "percent": 100, "allow": []}})
    assert runtime.is_enabled("f", "u", path=path)
    assert not runtime.is_enabled("unknown", "u", path=path)
    write_doc(path, {"f": {"enabled": False, "percent": 100, "allow": []}})
    assert not runtime.is_enabled("f", "u", path=path)
    # Rewritten in place with the same size: the modification time tells.
    flags = runtime.FlagsFile(path)
    assert not flags.is_enabled("f")
    text = path.read_text().replace('"enabled": false', '"enabled": true ')
    path.write_text(text)
    os.utime(path, ns=(1, 2))
    assert flags.is_enabled("f")
    path.unlink()
    assert not flags.is_enabled("f")


def test_is_enabled_keeps_the_last_good_rules_over_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_doc(path, {"f": {"enabled": True}})
    flags = runtime.FlagsFile(path)
    assert flags.is_enabled("f", "u")
    path.write_text('{"flags": {"f": ')  # a hand edit caught half-way
    assert flags.is_enabled("f", "u")
    write_doc(path, {"f": {"enabled": "yes"}, "g": "junk"})  # malformed entries: off
    assert not flags.is_enabled("f", "u") and not flags.is_enabled("g", "u")


def test_is_enabled_uses_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env-flags.json"
    write_doc(path, {"f": {"enabled": True}})
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    assert not runtime.is_enabled("f")
    monkeypatch.setenv(runtime.ENV_VAR, str(path))
    assert runtime.is_enabled("f")


def test_is_enabled_is_thread_safe_under_concurrent_pushes(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_doc(path, {"f": {"enabled": True}})
    flags = runtime.FlagsFile(path)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                flags.is_enabled("f", "u")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        write_doc(path, {"f": {"enabled": i % 2 == 0}})
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert flags.is_enabled("f") is False  # the last push (i = 199) turned it off


def test_runtime_is_stdlib_only_and_the_sample_app_ships_an_identical_copy() -> None:
    source = (REPO / "deployer" / "flags" / "runtime.py").read_text()
    assert (REPO / "examples" / "app" / "flags_runtime.py").read_text() == source, (
        "examples/app/flags_runtime.py must be a copy of deployer/flags/runtime.py:"
        " cp deployer/flags/runtime.py examples/app/flags_runtime.py"
    )
    imports = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imports.add((node.module or "").split(".")[0])
    assert imports <= {
        "__future__",
        "hashlib",
        "json",
        "os",
        "threading",
        "collections",
        "dataclasses",
        "typing",
    }


def test_the_sample_flags_file_is_valid() -> None:
    flagset = parse_flags((REPO / "flags" / "local.yml").read_text(), "flags/local.yml", "local")
    assert flagset.get("new-checkout").allow == ("alice", "bob")


# ------------------------------------------------------ orchestration, recorded hosts

INVENTORY = """\
all:
  vars: {ansible_user: deploy}
  hosts:
    h1: {ansible_host: 127.0.0.2}
    h2: {ansible_host: 127.0.0.3}
"""
PLAYBOOK = "application: app\ndeploy_to: /srv/app\nsource: {path: src}\n"


@pytest.fixture
def project(tmp_path: Path) -> api.Project:
    for sub in ("inventories", "playbooks", "templates", "flags"):
        (tmp_path / sub).mkdir()
    (tmp_path / "inventories" / "test.yml").write_text(INVENTORY)
    (tmp_path / "playbooks" / "deploy.yml").write_text(PLAYBOOK)
    (tmp_path / "flags" / "test.yml").write_text(GOOD)
    return api.Project(tmp_path)


def prepare_out(current: str = "R1", lock: str = "acquired") -> str:
    return prepare_output(lock=lock, current=f"/srv/app/releases/{current}", releases=[current])


def test_set_locks_edits_the_file_pushes_and_records(project: api.Project) -> None:
    def respond(host, script: Script) -> Result:
        return Result(0, prepare_out() if script.step == "prepare" else "@@flags pushed 10\n")

    transport = RecordingTransport(respond)
    loaded = api.load(project, "test")
    result = set_flag(loaded, api.Options(transport=transport), "new-checkout", percent=30)
    assert result.file_changed and result.releases == {"h1": "R1", "h2": "R1"}
    text = (project.root / "flags" / "test.yml").read_text()
    assert "percent: 30" in text and "# flipped by flags.set" in text
    for host in ("h1", "h2"):
        assert transport.steps(host) == ["prepare", "flags"]  # no unlock step: the push does it
    push = next(s for h, s in transport.calls if s.step == "flags")
    pushed = json.loads(push.stdin.segments[0])  # type: ignore[arg-type]
    assert pushed["flags"]["new-checkout"] == {
        "enabled": True,
        "percent": 30,
        "allow": ["alice", "bob"],
    }
    record = json.loads(push.render().split("printf '%s\\n' '")[1].split("' >>")[0])
    assert record["action"] == "flags" and record["release"] == "R1"
    assert (
        record["result"] == "success"
        and record["change"] == "new-checkout: on 30%, allow alice,bob"
    )
    prepare = next(s for h, s in transport.calls if s.step == "prepare")
    assert '"action": "flags"' in prepare.render()  # the deploy lock, taken as a flags run


def test_a_held_lock_changes_neither_the_file_nor_any_host(project: api.Project) -> None:
    def respond(host, script: Script) -> Result:
        if script.step == "prepare":
            return Result(75, prepare_out(lock="held"))
        return Result(0, "")

    transport = RecordingTransport(respond)
    with pytest.raises(LockHeldError):
        set_flag(
            api.load(project, "test"), api.Options(transport=transport), "new-checkout", on=True
        )
    assert (project.root / "flags" / "test.yml").read_text() == GOOD
    assert all(s.step != "flags" for _, s in transport.calls)


def test_a_failed_push_names_the_host_and_releases_its_lock(project: api.Project) -> None:
    def respond(host, script: Script) -> Result:
        if script.step == "prepare":
            return Result(0, prepare_out())
        if script.step == "flags" and host.name == "h2":
            return Result(1, "writing /srv/app/shared/flags.json failed")
        return Result(0, "")

    transport = RecordingTransport(respond)
    with pytest.raises(DeployFailed, match=r"flags pushed to 1 of 2 host\(s\); failed on h2"):
        set_flag(
            api.load(project, "test"), api.Options(transport=transport), "new-checkout", on=True
        )
    assert transport.steps("h2") == ["prepare", "flags", "unlock"]
    assert transport.steps("h1") == ["prepare", "flags"]


def test_list_marks_drift_per_host(project: api.Project) -> None:
    flagset = parse(GOOD)
    drifted = parse(edit(GOOD, "new-checkout", on=True))

    def respond(host, script: Script) -> Result:
        assert script.step == "flags_read"
        doc = {"h1": flagset, "h2": drifted}[host.name].to_json().decode()
        return Result(0, read_output("/srv/app/releases/R1", doc))

    report = list_flags(
        api.load(project, "test"), api.Options(transport=RecordingTransport(respond))
    )
    assert report.drift("new-checkout") == ("h2",)
    assert report.drift("dark_mode") == ()
    assert report.has_drift
    from deployer.flags.tasks import render_report

    text = render_report(report)
    assert "  h1: off, allow alice,bob" in text
    assert "  h2: on, allow alice,bob  DRIFT" in text
