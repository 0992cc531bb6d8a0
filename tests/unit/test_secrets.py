"""Secrets: the type, where values come from, where they may be used, and that they are masked
in everything the deployer prints. Real hosts (file modes, /proc) are in tests/integration."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import pickle
import textwrap
import traceback
from pathlib import Path

import pytest

from deployer import secrets as secrets_module
from deployer.config import parse_inventory_yaml, parse_playbook
from deployer.config.model import Playbook
from deployer.dryrun import describe
from deployer.errors import ConfigError, RemoteCommandError
from deployer.events import Event, EventBus, Notice, StepFinished
from deployer.plan import DeployPlan, build_plan
from deployer.release import build_release
from deployer.remote import scripts
from deployer.remote.recording import RecordingTransport
from deployer.remote.transport import Result
from deployer.runner import Runner
from deployer.secrets import MASK, Secret, redact, redact_event, resolve_secrets

# Each test uses its own values: every Secret ever made is masked for the whole process.
VALUE = "pw-unit-3f9c1e7a"

INVENTORY = """
all:
  hosts:
    h1: {ansible_host: 127.0.0.2, ansible_user: deploy}
"""

BASE = """\
application: app
deploy_to: /srv/app
source: {path: src}
"""


def playbook(extra: str) -> Playbook:
    return parse_playbook(BASE + textwrap.dedent(extra), "playbooks/deploy.yml")


def plan_for(tmp_path: Path, book: Playbook, templates: dict[str, str] | None = None) -> DeployPlan:
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, text in (templates or {}).items():
        (tmp_path / "templates" / name).write_text(text)
    inventory = parse_inventory_yaml(INVENTORY, "inv.yml", "test")
    return build_plan(
        book,
        inventory.hosts,
        env="test",
        release_id="20261127T170000Z-abc1234",
        run_id="run1",
        templates_dir=tmp_path / "templates",
    )


def config_error(fn: object, *args: object, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


# ---------------------------------------------------------------- the type


def test_secret_shows_only_stars_in_str_repr_format_and_containers() -> None:
    secret = Secret("pw-type-81d2c0")
    assert str(secret) == repr(secret) == format(secret) == f"{secret}" == f"{secret}" == MASK
    assert f"{secret:>5}" == "  ***"
    assert "pw-type-81d2c0" not in repr({"DB": secret}) + repr([secret])
    assert json.dumps({"DB": secret}, default=str) == '{"DB": "***"}'
    assert secret.reveal() == "pw-type-81d2c0"


def test_secret_is_not_a_str_so_string_operations_cannot_leak_it() -> None:
    secret = Secret("pw-ops-5b7a11")
    assert not isinstance(secret, str)
    with pytest.raises(TypeError):
        _ = "prefix " + secret  # type: ignore[operator]
    with pytest.raises(TypeError):
        json.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret
    assert Secret("pw-ops-5b7a11") == secret and Secret("other-value") != secret


# ---------------------------------------------------------------- masking


def test_redact_masks_values_and_their_occurrences() -> None:
    Secret("pw-redact-9e01")
    assert redact("DB=pw-redact-9e01 ok") == "DB=*** ok"
    assert redact("nothing here") == "nothing here"


def test_short_values_are_masked_only_as_whole_lines() -> None:
    Secret("q7z")  # too short to mask inside words: it would be everywhere
    assert redact("q7z\nthe q7z thing\n  q7z  ") == "***\nthe q7z thing\n***"


def test_a_multi_line_value_is_masked_line_by_line_too() -> None:
    Secret("-----KEY-----\nline-one-abcdef\nline-two-123456\n}")
    # An output tail that starts halfway through the key still shows none of it.
    assert redact("line-two-123456\nafter") == "***\nafter"
    assert redact("}") == "}"  # its short lines are not secrets


def test_redact_event_masks_every_text_field() -> None:
    Secret("pw-event-44aa")
    event = StepFinished(
        host="h1", step="stage", ok=False, duration=1.0, output="x pw-event-44aa", error="e"
    )
    clean = redact_event(event)
    assert clean.output == "x ***" and clean.at == event.at and clean.error == "e"
    untouched = StepFinished(host="h1", step="s", ok=True, duration=0.1)
    assert redact_event(untouched) is untouched


def test_an_event_is_redacted_once_however_many_reporters_the_bus_has(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """JsonLinesReporter and RunRecorder each redact what they get, so that no secret gets
    out whoever emitted the event; the bus hands both the same event, and the second call
    answers from the first instead of searching every text again."""
    from deployer.reporters import JsonLinesReporter, RunRecorder

    Secret("pw-bus-91fe")
    searched: list[object] = []
    redact_value = secrets_module._redact_value  # noqa: SLF001

    def counted(value: object) -> object:
        searched.append(value)
        return redact_value(value)

    monkeypatch.setattr(secrets_module, "_redact_value", counted)
    lines = io.StringIO()
    recorder = RunRecorder(tmp_path)
    bus = EventBus()
    bus.subscribe(JsonLinesReporter(lines))
    bus.subscribe(recorder)
    seen: list[Event] = []
    bus.subscribe(lambda event: seen.append(redact_event(event)))

    bus.emit(Notice(level="warning", text="token pw-bus-91fe refused"))
    assert "pw-bus-91fe" not in lines.getvalue() and "token *** refused" in lines.getvalue()
    assert recorder.record["notices"] == [{"level": "warning", "text": "token *** refused"}]
    assert seen[0].text == "token *** refused"  # type: ignore[attr-defined]
    fields = len(searched)
    assert fields == len(dataclasses.fields(Notice))  # one pass, for three reporters

    other = Notice(level="info", text="nothing secret")
    bus.emit(other)
    assert len(searched) == 2 * fields and seen[1] is other


def test_a_secret_registered_since_is_masked_in_an_event_redacted_before() -> None:
    first = Notice(level="info", text="early pw-late-5d0c")
    assert redact_event(first) is first
    Secret("pw-late-5d0c")  # e.g. a presigned URL signed while the run goes on
    assert redact_event(first).text == "early ***"
    second = Notice(level="info", text="pw-late-5d0c again")
    assert redact_event(second).text == "*** again" and redact_event(first).text == "early ***"


def test_runner_masks_output_and_errors_of_a_failing_step() -> None:
    Secret("pw-runner-7c3d")

    def responder(host: object, script: object) -> Result:
        return Result(1, "@@step restart\nconnecting with pw-runner-7c3d\nrefused\n")

    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    runner = Runner(RecordingTransport(responder=responder), bus)
    inventory = parse_inventory_yaml(INVENTORY, "inv.yml", "test")
    script = scripts.hook(scripts.Layout("/srv/app"), "after_switch", "./x", {})
    with pytest.raises(RemoteCommandError) as info:
        runner.step(inventory.hosts[0], script)
    runner.close()
    shown = str(info.value) + info.value.output + info.value.output_full
    shown += "".join(repr(e) for e in events)
    assert "pw-runner-7c3d" not in shown
    assert "connecting with ***" in str(info.value)


# ---------------------------------------------------------------- the playbook key


def test_secrets_are_read_into_frozen_sources_with_their_location() -> None:
    book = playbook(
        """\
        secrets:
          DB_PASSWORD: {env: APP_DB_PASSWORD}
          API_KEY:
            command: sops -d secrets.yml | jq -r .api_key
        """
    )
    db, api = book.secrets["DB_PASSWORD"], book.secrets["API_KEY"]
    assert (db.env, db.command) == ("APP_DB_PASSWORD", None)
    assert (api.env, api.command) == (None, "sops -d secrets.yml | jq -r .api_key")
    assert str(db.where) == "playbooks/deploy.yml:5: secrets.DB_PASSWORD"
    assert str(api.where) == "playbooks/deploy.yml:6: secrets.API_KEY"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("db-password: {env: X}", "5: secrets.db-password: not a valid secret name"),
        ("DB: {env: X, command: y}", "5: secrets.DB: expected exactly one of 'env' or 'command'"),
        ("DB: {}", "5: secrets.DB: expected exactly one of 'env' or 'command'"),
        ("DB: APP_DB", "5: secrets.DB: expected a mapping, got 'APP_DB'"),
        ("DB: {env: APP-DB}", "5: secrets.DB.env: not an environment variable name: 'APP-DB'"),
        ("DB: {file: x}", "5: secrets.DB.file: unknown key (allowed: env, command)"),
    ],
)
def test_bad_secret_entries_fail_at_load_with_their_line(entry: str, message: str) -> None:
    error = config_error(playbook, f"secrets:\n  {entry}\n")
    assert str(error).splitlines()[0] == f"playbooks/deploy.yml:{message}"


# ---------------------------------------------------------------- resolving


def test_env_source_reads_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APP_DB_PASSWORD", "pw-env-0b1c2d")
    book = playbook("secrets:\n  DB: {env: APP_DB_PASSWORD}\n")
    assert resolve_secrets(book.secrets, tmp_path)["DB"].reveal() == "pw-env-0b1c2d"


@pytest.mark.parametrize("value", [None, ""])
def test_missing_or_empty_env_var_names_secret_variable_and_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("APP_DB_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("APP_DB_PASSWORD", value)
    book = playbook("vars: {}\nsecrets:\n  DB_PASSWORD: {env: APP_DB_PASSWORD}\n")
    error = config_error(resolve_secrets, book.secrets, tmp_path)
    state = "is not set" if value is None else "is empty"
    assert error.message == (
        "playbooks/deploy.yml:6: secrets.DB_PASSWORD: secret 'DB_PASSWORD': environment"
        f" variable APP_DB_PASSWORD {state}"
    )
    assert error.hint is not None
    assert error.hint.startswith("export APP_DB_PASSWORD, or in CI map it from the secret store")


def test_command_source_runs_in_the_project_root_and_strips_one_newline(tmp_path: Path) -> None:
    (tmp_path / "vault.txt").write_text("pw-cmd-6e5f4a\n\n")
    book = playbook('secrets:\n  DB: {command: "cat vault.txt"}\n')
    assert resolve_secrets(book.secrets, tmp_path)["DB"].reveal() == "pw-cmd-6e5f4a\n"


def test_failing_command_shows_stderr_never_stdout(tmp_path: Path) -> None:
    book = playbook(
        'secrets:\n  DB: {command: "echo pw-fail-1a2b3c; echo no key for prod >&2; exit 3"}\n'
    )
    error = config_error(resolve_secrets, book.secrets, tmp_path)
    assert str(error) == (
        "playbooks/deploy.yml:5: secrets.DB: secret 'DB': command exited with code 3\n"
        "    no key for prod"
    )
    assert "pw-fail-1a2b3c" not in str(error)


def test_command_that_hangs_is_killed_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets_module, "COMMAND_TIMEOUT", 0.5)
    book = playbook('secrets:\n  DB: {command: "echo pw-slow-9d8c7b; sleep 30"}\n')
    error = config_error(resolve_secrets, book.secrets, tmp_path)
    assert "secret 'DB': command did not finish within 0.5s" in str(error)
    assert "pw-slow-9d8c7b" not in str(error)


def test_command_that_prints_nothing_is_an_error(tmp_path: Path) -> None:
    book = playbook('secrets:\n  DB: {command: "true"}\n')
    assert "command printed nothing" in str(config_error(resolve_secrets, book.secrets, tmp_path))


# ---------------------------------------------------------------- where they may be used


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("restart: ./restart --password {{ secrets.DB }}\n", "6: restart"),
        ("migrate: {command: 'DB={{ secrets[\"DB\"] }} ./migrate'}\n", "6: migrate.command"),
        ("health: {http: {url: 'http://x/{{ secrets.DB }}'}}\n", "6: health.http.url"),
        (
            "hooks: {after_stage: [{local: 'echo {{ secrets }}'}]}\n",
            "6: hooks.after_stage[0].local",
        ),
        ("vars: {dsn: 'pg://u:{{ secrets.DB }}@db'}\nrestart: ./r {{ dsn }}\n", "7: restart"),
    ],
)
def test_secrets_in_commands_fail_at_render_time_at_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, where: str
) -> None:
    monkeypatch.setenv("APP_DB_UNIT", "pw-cmdline-2d4f6a")
    book = playbook("secrets:\n  DB: {env: APP_DB_UNIT}\n" + extra)
    error = config_error(plan_for, tmp_path, book)
    assert error.message.startswith(
        f"playbooks/deploy.yml:{where}: secrets cannot be used in commands: they would be"
        " visible on the remote command line; use them in a template file instead"
    )
    assert "pw-cmdline-2d4f6a" not in str(error)


def test_deploy_to_cannot_use_secrets_either(tmp_path: Path) -> None:
    book = parse_playbook(
        "application: app\ndeploy_to: /srv/{{ secrets.X }}\nsource: {path: src}\n",
        "playbooks/deploy.yml",
    )
    error = config_error(plan_for, tmp_path, book)
    assert error.message.startswith("playbooks/deploy.yml:2: deploy_to: secrets cannot be used")


def test_template_files_get_the_value_and_the_plan_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_PLAN", "pw-plan-8a7b6c")
    book = playbook(
        """\
        secrets:
          DB: {env: APP_DB_PLAN}
        vars: {dsn: "pg://app:{{ secrets.DB }}@db/app"}
        templates:
          - {src: env.j2, dest: .env, shared: true, mode: "0600"}
          - {src: ini.j2, dest: config/app.ini, mode: "0644"}
        """
    )
    plan = plan_for(
        tmp_path,
        book,
        {"env.j2": "DB_PASSWORD={{ secrets.DB }}\nDSN={{ dsn }}\n", "ini.j2": "[app]\n"},
    )
    files = plan.hosts[0].host_files
    env = files.shared[0]
    assert (env.dest, env.mode) == (".env", 0o600)
    assert env.content == b"DB_PASSWORD=pw-plan-8a7b6c\nDSN=pg://app:pw-plan-8a7b6c@db/app\n"
    assert plan.secrets["DB"].reveal() == "pw-plan-8a7b6c"
    # Nothing that prints the plan shows the value: reprs, tracebacks, the dry run.
    try:
        raise RuntimeError(f"boom {plan!r}")
    except RuntimeError:
        shown = traceback.format_exc()
    assert "pw-plan-8a7b6c" not in shown
    assert "pw-plan-8a7b6c" not in repr(plan) + repr(plan.hosts[0])


def test_undefined_secret_in_a_template_names_file_and_line(tmp_path: Path) -> None:
    book = playbook("templates:\n  - {src: env.j2, dest: .env, mode: '0600'}\n")
    error = config_error(plan_for, tmp_path, book, {"env.j2": "A=1\nB={{ secrets.NOPE }}\n"})
    assert error.message.endswith(":2: undefined secret 'NOPE' (declared: none)")
    assert error.hint == "declare it under secrets: in the playbook"


def test_template_errors_that_quote_a_secret_show_it_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_QUOTED", "pw-quoted-7a8b9c")
    book = playbook(
        "secrets:\n  DB: {env: APP_DB_QUOTED}\nvars: {ports: {}}\n"
        "templates:\n  - {src: env.j2, dest: .env, mode: '0600'}\n"
    )
    # Jinja names the missing key in its message, and here the key is the secret.
    error = config_error(plan_for, tmp_path, book, {"env.j2": "P={{ ports[secrets.DB] }}\n"})
    assert "pw-quoted-7a8b9c" not in str(error)
    assert "has no attribute '***'" in str(error)


def test_a_secret_in_a_world_readable_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_WORLD", "pw-world-3c2b1a")
    book = playbook(
        "secrets:\n  DB: {env: APP_DB_WORLD}\ntemplates:\n  - {src: env.j2, dest: .env}\n"
    )
    error = config_error(plan_for, tmp_path, book, {"env.j2": "P={{ secrets.DB }}\n"})
    assert error.message == (
        "playbooks/deploy.yml:7: templates[0].mode: env.j2 renders secret(s) DB into a file"
        " open to every user on the host (mode 0644)"
    )


def test_a_release_template_under_a_shared_path_is_refused() -> None:
    error = config_error(
        playbook,
        "shared: {files: [.env]}\ntemplates:\n  - {src: env.j2, dest: .env, mode: '0600'}\n",
    )
    assert "templates[0].dest: dest '.env' is under the shared path '.env'" in error.message
    assert error.hint == "add `shared: true` to write it into shared/ instead"


def test_status_style_plans_neither_render_nor_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APP_DB_STATUS", raising=False)
    book = playbook(
        "secrets:\n  DB: {env: APP_DB_STATUS}\n"
        "templates:\n  - {src: env.j2, dest: .env, shared: true, mode: '0600'}\n"
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "env.j2").write_text("P={{ secrets.DB }}\n")
    inventory = parse_inventory_yaml(INVENTORY, "inv.yml", "test")
    plan = build_plan(
        book,
        inventory.hosts,
        env="test",
        release_id="20261127T170000Z-abc1234",
        run_id="r",
        templates_dir=tmp_path / "templates",
        render_files=False,
    )
    assert not plan.hosts[0].host_files and plan.secrets == {}


# ---------------------------------------------------------------- on the way to the host


def test_stage_creates_templates_owner_only_and_widens_only_non_secret_ones() -> None:
    files = scripts.HostFiles.pack(
        [
            scripts.RenderedFile("config/app.ini", 0o644, b"[app]\n"),
            scripts.RenderedFile("config/db.ini", 0o600, b"pw-stage-5e6f7a\n"),
            scripts.RenderedFile(".env", 0o640, b"P=pw-stage-5e6f7a\n", shared=True),
        ]
    )
    script = scripts.stage(
        scripts.Layout("/srv/app"),
        "20261127T170000Z-abc1234",
        "r1",
        archive=b"A" * 3,
        archive_size=3,
        archive_sha256="ab" * 32,
        host_files=files,
        shared_dirs=["log"],
        shared_files=[],
    )
    text = script.render()
    tree = "/srv/app/.deploy/staging/20261127T170000Z-abc1234.r1/tree"
    templates = text[text.index("echo '@@step templates'") : text.index("@@step link_shared")]
    assert templates.splitlines()[1:] == [
        f"mkdir -p {tree}/config",
        f"(umask 077 && head -c {len(files.tar)} | tar -xf - -C {tree} --no-same-owner"
        " --no-same-permissions)",
        f"chmod 0644 {tree}/config/app.ini",
        "mkdir -p /srv/app/shared",
        # An unpredictable name (issue 14), created 0600 by mktemp beside its target.
        "tmp=$(mktemp -p /srv/app/shared .env.tmp.XXXXXXXXXX)",
        '(umask 077 && head -c 18 > "$tmp" && [ "$(stat -c %s "$tmp")" = 18 ])'
        ' || { rm -f "$tmp";'
        " echo 'writing /srv/app/shared/.env failed (short read or full disk)' >&2; exit 1; }",
        'chmod 0640 "$tmp"',
        'mv -fT "$tmp" /srv/app/shared/.env',
        f"rm -rf {tree}/.env",
        f"ln -s /srv/app/shared/.env {tree}/.env",
        "echo '",
    ]
    # The values travel on stdin only: never in the script, so never on a command line.
    assert "pw-stage-5e6f7a" not in script.command_line()
    assert script.stdin.segments == (b"AAA", files.tar, b"P=pw-stage-5e6f7a\n")
    assert "pw-stage-5e6f7a" not in repr(files)


def test_a_shared_template_under_a_shared_dir_is_not_linked_again() -> None:
    files = scripts.HostFiles.pack([scripts.RenderedFile("config/.env", 0o600, b"x", shared=True)])
    text = scripts.stage(
        scripts.Layout("/srv/app"),
        "20261127T170000Z-abc1234",
        "r1",
        archive=b"A",
        archive_size=1,
        archive_sha256="ab" * 32,
        host_files=files,
        shared_dirs=["config"],
        shared_files=[],
    ).render()
    assert 'mv -fT "$tmp" /srv/app/shared/config/.env' in text
    assert "tree/config/.env" not in text  # reached through the config/ link
    assert "chmod 0600" not in text  # already created 0600


def test_dry_run_lists_template_sizes_never_their_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_DRY", "pw-dry-1f2e3d")
    book = playbook(
        "secrets:\n  DB: {env: APP_DB_DRY}\n"
        "templates:\n  - {src: env.j2, dest: .env, shared: true, mode: '0600'}\n"
    )
    plan = plan_for(tmp_path, book, {"env.j2": "P={{ secrets.DB }}\n"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('hi')\n")
    release = build_release(source_dir=src, work_dir=tmp_path / "build")
    text = describe(plan, release)
    assert "   template: shared/.env mode 0600, 16 bytes" in text
    assert "pw-dry-1f2e3d" not in text
