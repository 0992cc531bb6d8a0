"""Playbook loading: defaults, every section's forms, and one-line errors with file:line: key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.config import (
    Connection,
    Health,
    Hook,
    Playbook,
    Preflight,
    Shared,
    Source,
    Strategy,
    load_playbook,
    parse_playbook,
    validate_templates_exist,
)
from deployer.config.model import Canary
from deployer.errors import ConfigError

MINIMAL = """
application: sample-app
deploy_to: /srv/{{ application }}
source: {path: examples/app}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "templates").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(project: Path, text: str) -> Playbook:
    path = project / "playbooks" / "deploy.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_playbook(path)


def error_of(project: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(project, text)
    return info.value


def with_minimal(extra: str) -> str:
    return MINIMAL + textwrap.dedent(extra)


# MINIMAL takes lines 1-3 once dedented; sections added by with_minimal start on line 4.


# ---------------------------------------------------------------- shapes and defaults


def test_minimal_playbook_gets_the_documented_defaults(project: Path) -> None:
    playbook = load(project, MINIMAL)

    assert playbook.path == "playbooks/deploy.yml"
    assert playbook.application == "sample-app"
    assert playbook.deploy_to.text == "/srv/{{ application }}"
    assert str(playbook.deploy_to.where) == "playbooks/deploy.yml:2: deploy_to"
    assert playbook.source == Source(path="examples/app")
    assert playbook.keep_releases == 5
    assert playbook.shared == Shared()
    assert playbook.templates == ()
    assert playbook.migrate is None
    assert playbook.restart is None
    assert playbook.health == Health()
    assert playbook.strategy == Strategy()
    assert playbook.strategy.serial == ("100%",)
    assert playbook.hooks == {}
    assert playbook.connection == Connection()
    assert playbook.vars == {}
    assert playbook.preflight == Preflight(strict=False)


def test_full_playbook(project: Path) -> None:
    playbook = load(
        project,
        """
        application: sample-app
        deploy_to: /srv/{{ application }}
        keep_releases: 3
        source: {git: ".", ref: main, subdir: examples/app}
        shared: {dirs: [data, log/], files: [.env]}
        templates:
          - {src: app.ini.j2, dest: config/app.ini, mode: "0640"}
        migrate: {command: "python3 migrate.py", run_on: migrate}
        restart: "./bin/restart"
        health:
          http: {url: "http://{{ ansible_host }}:8000/health", via: local, expect_version: true}
          command: "curl -fsS localhost:8000"
          timeout: 2
          successes: 3
          interval: 0.5
          deadline: 30
        strategy:
          kind: rolling
          serial: [1, "50%"]
          max_fail_percentage: 10
          pause: 1.5
          rollback: batch
        hooks:
          after_switch: ["echo switched"]
        connection: {parallel: 5, connect_timeout: 3, command_timeout: 60}
        vars: {app_port: 8000, nested: {a: [1, 2]}}
        """,
    )
    assert playbook.keep_releases == 3
    assert playbook.source == Source(git_repo=".", ref="main", subdir="examples/app")
    assert playbook.shared == Shared(dirs=("data", "log"), files=(".env",))
    (template,) = playbook.templates
    assert (template.src, template.dest, template.mode) == ("app.ini.j2", "config/app.ini", 0o640)
    assert str(template.where) == "playbooks/deploy.yml:7: templates[0].src"
    assert playbook.migrate is not None
    assert playbook.migrate.command.text == "python3 migrate.py"
    assert playbook.migrate.run_on == "migrate"
    assert playbook.restart is not None and playbook.restart.text == "./bin/restart"
    health = playbook.health
    assert health.http is not None and health.http.via == "local"
    assert (health.http.expect_status, health.http.expect_version) == (200, True)
    assert str(health.http.url.where) == "playbooks/deploy.yml:11: health.http.url"
    assert health.command is not None
    assert (health.timeout, health.successes, health.interval, health.deadline) == (2, 3, 0.5, 30)
    assert playbook.strategy == Strategy(
        serial=(1, "50%"), max_fail_percentage=10, pause=1.5, rollback="batch"
    )
    assert playbook.connection == Connection(parallel=5, connect_timeout=3, command_timeout=60)
    assert playbook.vars == {"app_port": 8000, "nested": {"a": [1, 2]}}
    assert type(playbook.vars["nested"]) is dict  # plain values, no line bookkeeping


def test_preflight_strict_is_read_with_where_it_was_set(project: Path) -> None:
    playbook = load(project, with_minimal("preflight:\n  strict: true\n"))
    assert playbook.preflight.strict is True
    assert str(playbook.preflight.where) == "playbooks/deploy.yml:5: preflight.strict"
    off = load(project, with_minimal("preflight: {strict: false}\n"))
    assert off.preflight.strict is False
    assert load(project, with_minimal("preflight:\n")).preflight == Preflight()
    assert load(project, with_minimal("preflight: {}\n")).preflight == Preflight()


def test_preflight_errors_name_file_line_and_key(project: Path) -> None:
    error = error_of(project, with_minimal("preflight:\n  strikt: true\n"))
    assert error.message == (
        "playbooks/deploy.yml:5: preflight.strikt: unknown key (allowed: strict)"
    )
    assert error.hint == "did you mean 'strict'?"
    error = error_of(project, with_minimal('preflight:\n  strict: "yes please"\n'))
    assert (error.file, error.line, error.key_path) == (
        "playbooks/deploy.yml",
        5,
        "preflight.strict",
    )
    assert "expected true or false" in error.message
    error = error_of(project, with_minimal("preflight: strict\n"))
    assert (error.line, error.key_path) == (4, "preflight")


def test_empty_optional_keys_mean_their_defaults(project: Path) -> None:
    playbook = load(project, with_minimal("hooks:\nstrategy:\nkeep_releases:\nvars:\n"))
    assert playbook.hooks == {}
    assert playbook.strategy == Strategy()
    assert playbook.keep_releases == 5


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        ("2", (2,)),
        ('"3"', (3,)),
        ('"25%"', ("25%",)),
        ("[1, 5, '100%']", (1, 5, "100%")),
    ],
)
def test_serial_forms(project: Path, serial: str, expected: tuple[int | str, ...]) -> None:
    playbook = load(project, with_minimal(f"strategy:\n  serial: {serial}\n"))
    assert playbook.strategy.serial == expected


@pytest.mark.parametrize(
    ("serial", "reason"),
    [
        ("0", "must be greater than 0, got 0"),
        ('"0%"', "percentage must be between 1% and 100%, got '0%'"),
        ('"150%"', "percentage must be between 1% and 100%, got '150%'"),
        ("[]", "must list at least one batch size"),
        ("true", 'expected a count or a percentage like "25%", got true'),
    ],
)
def test_serial_errors(project: Path, serial: str, reason: str) -> None:
    error = error_of(project, with_minimal(f"strategy:\n  serial: {serial}\n"))
    assert error.message == f"playbooks/deploy.yml:5: strategy.serial: {reason}"


def test_serial_item_error_names_the_item(project: Path) -> None:
    error = error_of(project, with_minimal('strategy:\n  kind: rolling\n  serial: [1, "abc"]\n'))
    assert error.message == (
        "playbooks/deploy.yml:6: strategy.serial[1]: "
        "expected a count or a percentage like \"25%\", got 'abc'"
    )


def test_hook_forms(project: Path) -> None:
    playbook = load(
        project,
        with_minimal(
            """
            hooks:
              before_build: {local: "make assets"}
              after_switch:
                - echo switched
                - {local: "notify {{ inventory_hostname }}"}
                - {remote: "touch done"}
              on_failure: "echo failed"
            """
        ),
    )
    hooks = {
        point: [(hook.where, hook.run.text) for hook in entries]
        for point, entries in playbook.hooks.items()
    }
    assert hooks == {
        "before_build": [("local", "make assets")],
        "after_switch": [
            ("remote", "echo switched"),
            ("local", "notify {{ inventory_hostname }}"),
            ("remote", "touch done"),
        ],
        "on_failure": [("remote", "echo failed")],
    }
    assert isinstance(playbook.hooks["on_failure"][0], Hook)
    assert str(playbook.hooks["after_switch"][1].run.where) == (
        "playbooks/deploy.yml:9: hooks.after_switch[1].local"  # line 4 is blank
    )


def test_rollback_hook_points(project: Path) -> None:
    playbook = load(
        project,
        with_minimal(
            "hooks:\n  before_rollback: {local: ./snapshot}\n  after_rollback: ./warm-cache\n"
        ),
    )
    assert [(p, [(h.where, h.run.text) for h in hs]) for p, hs in playbook.hooks.items()] == [
        ("before_rollback", [("local", "./snapshot")]),
        ("after_rollback", [("remote", "./warm-cache")]),
    ]
    for typo, meant in (("before_rolback", "before_rollback"), ("after_rollbak", "after_rollback")):
        error = error_of(project, with_minimal(f"hooks:\n  {typo}: [x]\n"))
        assert "before_switch, after_switch, before_rollback, after_rollback" in error.message
        assert error.hint == f"did you mean '{meant}'?"


def test_hook_errors(project: Path) -> None:
    error = error_of(project, with_minimal("hooks:\n  after_swich: [x]\n"))
    assert error.message.startswith("playbooks/deploy.yml:5: hooks.after_swich: unknown key")
    assert error.hint == "did you mean 'after_switch'?"
    error = error_of(project, with_minimal("hooks:\n  after_switch: [{local: a, remote: b}]\n"))
    assert error.message == (
        "playbooks/deploy.yml:5: hooks.after_switch[0]: expected exactly one of 'local' or 'remote'"
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [('"0640"', 0o640), ("0640", 0o640), ('"644"', 0o644), ('"0o755"', 0o755), ("'4755'", 0o4755)],
)
def test_mode_forms(project: Path, mode: str, expected: int) -> None:
    text = with_minimal(f"templates:\n  - {{src: a.j2, dest: a, mode: {mode}}}\n")
    assert load(project, text).templates[0].mode == expected


def test_mode_errors(project: Path) -> None:
    error = error_of(project, with_minimal("templates:\n  - {src: a.j2, dest: a, mode: 644}\n"))
    assert (
        error.message
        == "playbooks/deploy.yml:5: templates[0].mode: 644 is read as a decimal number"
    )
    assert error.hint == 'write file modes as quoted octal strings, e.g. "0644"'
    error = error_of(project, with_minimal('templates:\n  - {src: a.j2, dest: a, mode: "0999"}\n'))
    assert error.message == (
        "playbooks/deploy.yml:5: templates[0].mode: "
        "expected an octal file mode like \"0644\", got '0999'"
    )
    error = error_of(project, with_minimal("templates:\n  - {src: a.j2, dest: a, mode: 017777}\n"))
    assert error.message == (
        "playbooks/deploy.yml:5: templates[0].mode: must be between 0000 and 7777, got 0o17777"
    )


# ---------------------------------------------------------------- errors


def test_yaml_syntax_error_names_file_and_line(project: Path) -> None:
    error = error_of(project, 'application: app\ndeploy_to: "/srv\nsource: {path: .\n')
    assert error.file == "playbooks/deploy.yml"
    assert error.line == 4
    assert error.message.startswith("playbooks/deploy.yml:4: invalid YAML: ")


def test_unknown_top_level_key_lists_the_allowed_ones(project: Path) -> None:
    error = error_of(project, with_minimal("keep_release: 3\n"))
    assert error.message == (
        "playbooks/deploy.yml:4: keep_release: unknown key (allowed: application, deploy_to, "
        "keep_releases, source, shared, templates, migrate, restart, health, strategy, hooks, "
        "connection, vars, secrets, notify, preflight, cleanup, artifacts, watch, resources)"
    )
    assert error.hint == "did you mean 'keep_releases'?"


def test_unknown_nested_key(project: Path) -> None:
    error = error_of(project, with_minimal("health:\n  http:\n    url: http://x\n    code: 200\n"))
    assert error.message == (
        "playbooks/deploy.yml:7: health.http.code: unknown key "
        "(allowed: url, via, expect_status, expect_version)"
    )


def test_wrong_type(project: Path) -> None:
    error = error_of(project, with_minimal("keep_releases: many\n"))
    assert error.message == "playbooks/deploy.yml:4: keep_releases: expected an integer, got 'many'"
    error = error_of(project, with_minimal("connection: {parallel: 0}\n"))
    assert error.message == "playbooks/deploy.yml:4: connection.parallel: must be at least 1, got 0"


def test_missing_required_key_names_the_mapping(project: Path) -> None:
    error = error_of(project, "application: app\nsource: {path: .}\n")
    assert error.message == "playbooks/deploy.yml:1: missing required key 'deploy_to'"
    error = error_of(project, with_minimal("migrate:\n  run_on: migrate\n"))
    assert error.message == "playbooks/deploy.yml:4: migrate: missing required key 'command'"


def test_source_keep_bytecode(project: Path) -> None:
    base = "application: app\ndeploy_to: /srv/app\n"
    assert load(project, base + "source: {path: .}\n").source.keep_bytecode is False
    kept = load(project, base + "source: {path: ., keep_bytecode: true}\n").source
    assert kept.keep_bytecode is True
    error = error_of(project, base + "source: {path: ., keep_bytecode: sometimes}\n")
    assert error.message.startswith("playbooks/deploy.yml:3: source.keep_bytecode: expected")


def test_source_needs_exactly_one_of_path_or_git(project: Path) -> None:
    base = "application: app\ndeploy_to: /srv/app\n"
    error = error_of(project, base + "source: {path: ., git: .}\n")
    assert (
        error.message == "playbooks/deploy.yml:3: source: expected exactly one of 'path' or 'git'"
    )
    error = error_of(project, base + "source: {path: ., ref: main}\n")
    assert error.message == "playbooks/deploy.yml:3: source.ref: only valid with 'git'"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../up", "must not contain '..', got '../up'"),
        ("/abs", "must be a relative path, got '/abs'"),
    ],
)
def test_shared_paths_stay_inside(project: Path, entry: str, reason: str) -> None:
    error = error_of(project, with_minimal(f"shared:\n  dirs: [data, {entry}]\n"))
    assert error.message == f"playbooks/deploy.yml:5: shared.dirs[1]: {reason}"


def test_template_syntax_is_checked_at_load(project: Path) -> None:
    error = error_of(project, with_minimal('restart: "systemctl restart {{ application"\n'))
    assert error.file == "playbooks/deploy.yml"
    assert error.line == 4
    assert error.key_path == "restart"
    assert error.message.startswith("playbooks/deploy.yml:4: restart: template syntax error: ")


def test_canary_strategy_with_its_ladder_and_rules(project: Path) -> None:
    playbook = load(
        project,
        with_minimal(
            """
            strategy:
              kind: canary
              canary:
                steps: [1, "50%"]
                bake: 12
                analysis:
                  url: "http://{{ ansible_host }}:8000/"
                  min_samples: 5
                  max_error_rate: 5
                  max_p50_ratio: 1.2
                  max_p95_ratio:
            """
        ),
    )
    canary = playbook.strategy.canary
    assert playbook.strategy.kind == "canary"
    assert canary is not None
    assert canary.steps == (1, "50%")
    assert canary.bake == 12
    assert canary.analysis.url is not None
    assert canary.analysis.url.text == "http://{{ ansible_host }}:8000/"
    assert canary.analysis.min_samples == 5
    assert canary.analysis.max_error_rate == 5
    assert canary.analysis.max_p50_ratio == 1.2
    assert canary.analysis.max_p95_ratio is None  # left empty: the rule is off
    assert canary.analysis.max_error_rate_increase == 1.0  # default kept
    assert playbook.strategy.blue_green is None


def test_canary_defaults_when_only_the_kind_is_given(project: Path) -> None:
    playbook = load(project, with_minimal("strategy: {kind: canary}\n"))
    assert playbook.strategy.canary == Canary()


def test_a_strategy_section_must_match_the_kind(project: Path) -> None:
    error = error_of(project, with_minimal("strategy:\n  canary: {bake: 5}\n"))
    assert error.message == (
        "playbooks/deploy.yml:5: strategy.canary: 'canary' settings given but kind is 'rolling'"
    )
    assert error.hint == "set kind: canary, or remove this section"


def test_canary_rule_keys_are_checked(project: Path) -> None:
    error = error_of(
        project,
        with_minimal("strategy:\n  kind: canary\n  canary:\n    analysis: {max_p99_ratio: 2}\n"),
    )
    assert error.key_path == "strategy.canary.analysis.max_p99_ratio"
    assert error.line == 7
    assert error.hint == "did you mean 'max_p95_ratio'?"


def test_unknown_strategy_kind(project: Path) -> None:
    error = error_of(project, with_minimal("strategy: {kind: linear}\n"))
    assert error.message == (
        "playbooks/deploy.yml:4: strategy.kind: expected one of: rolling, canary, blue_green,"
        " got 'linear'"
    )


def test_invalid_application_name(project: Path) -> None:
    error = error_of(project, "application: Sample App\ndeploy_to: /srv\nsource: {path: .}\n")
    assert error.message == "playbooks/deploy.yml:1: application: invalid name 'Sample App'"


def test_unquoted_number_where_text_is_expected_suggests_quotes(project: Path) -> None:
    error = error_of(project, "application: app\ndeploy_to: /srv\nsource: {git: ., ref: 0123}\n")
    assert error.message == "playbooks/deploy.yml:3: source.ref: expected a string, got 83"
    assert error.hint == 'quote it to keep it as text: "0123"'


def test_validate_templates_exist(project: Path) -> None:
    playbook = load(
        project,
        with_minimal(
            "templates:\n  - {src: app.ini.j2, dest: app.ini}\n  - {src: b.j2, dest: b}\n"
        ),
    )
    (project / "templates" / "app.ini.j2").write_text("port = {{ app_port }}\n")
    with pytest.raises(ConfigError) as info:
        validate_templates_exist(playbook, project / "templates")
    assert info.value.message == (
        "playbooks/deploy.yml:6: templates[1].src: template file not found: templates/b.j2"
    )
    (project / "templates" / "b.j2").write_text("ok\n{% if %}\n")
    with pytest.raises(ConfigError) as info:
        validate_templates_exist(playbook, project / "templates")
    assert info.value.message.startswith("templates/b.j2:2: template syntax error: ")
    (project / "templates" / "b.j2").write_text("ok\n")
    validate_templates_exist(playbook, project / "templates")


def test_parse_playbook_from_text() -> None:
    playbook = parse_playbook(MINIMAL, "deploy.yml")
    assert playbook.path == "deploy.yml"
    assert str(playbook.source.path) == "examples/app"
