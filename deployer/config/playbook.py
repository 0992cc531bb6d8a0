"""The playbook (playbooks/*.yml) read and validated into a frozen Playbook.

Every key is checked here, once: unknown keys, wrong types and bad Jinja2 syntax fail at
load with file, line and key path. Nothing is rendered here; that happens per host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, cast

# A module reference, not its function: deployer.artifacts imports the config package too.
from deployer.artifacts import settings as artifact_settings
from deployer.config.fields import checked_template, section_fields
from deployer.config.files import (
    check_template_dests,
    parse_shared,
    parse_source,
    parse_template_file,
)
from deployer.config.metrics import check_metric_secrets, watch
from deployer.config.model import (
    HOOK_POINTS,
    ArtifactStore,
    Connection,
    Health,
    Hook,
    HttpCheck,
    Migrate,
    Notify,
    Playbook,
    Preflight,
    Resources,
    SecretSource,
    Shared,
    Strategy,
)
from deployer.config.render import check_template_file
from deployer.config.resources import resources
from deployer.config.strategy import parse_analysis, parse_strategy
from deployer.config.yamlfile import Node, display_path, load_yaml, read_text
from deployer.errors import ConfigError

__all__ = ["load_playbook", "parse_playbook", "validate_templates_exist"]

_TOP_KEYS = (
    "application",
    "deploy_to",
    "keep_releases",
    "source",
    "shared",
    "templates",
    "migrate",
    "restart",
    "health",
    "strategy",
    "hooks",
    "connection",
    "vars",
    "secrets",
    "notify",
    "preflight",
    "cleanup",
    "artifacts",
    "watch",
    "resources",
)
_APPLICATION = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_playbook(path: Path) -> Playbook:
    shown = display_path(path)
    return parse_playbook(read_text(path, shown), shown)


def parse_playbook(text: str, path: str) -> Playbook:
    """Validate a playbook's YAML text; `path` is how the file is named in errors."""
    root = Node.root(load_yaml(text, path), path)
    fields = section_fields(root, _TOP_KEYS, required=("application", "deploy_to", "source"))
    section = fields.get

    application = fields["application"].text()
    if not _APPLICATION.fullmatch(application):
        raise fields["application"].error(
            f"invalid name {application!r}",
            hint="start with a lowercase letter or digit; then a-z, 0-9, '_', '.', '-'",
        )
    deploy_to = checked_template(fields["deploy_to"])
    if not deploy_to.text.startswith(("/", "{")):
        raise fields["deploy_to"].error(f"must be an absolute path, got {deploy_to.text!r}")

    keep, shared, templates = section("keep_releases"), section("shared"), section("templates")
    migrate, restart, health = section("migrate"), section("restart"), section("health")
    strategy, hooks, connection = section("strategy"), section("hooks"), section("connection")
    variables, secrets, notify = section("vars"), section("secrets"), section("notify")
    preflight, cleanup = section("preflight"), section("cleanup")
    artifacts = section("artifacts")
    watch_section, resources_section = section("watch"), section("resources")
    shared_paths = parse_shared(shared) if shared else Shared()
    template_files = (
        tuple(parse_template_file(item) for item in templates.items()) if templates else ()
    )
    check_template_dests(template_files, shared_paths)
    playbook = Playbook(
        path=path,
        application=application,
        deploy_to=deploy_to,
        source=parse_source(fields["source"]),
        keep_releases=keep.integer(minimum=1) if keep else 5,
        shared=shared_paths,
        templates=template_files,
        migrate=_migrate(migrate) if migrate else None,
        restart=checked_template(restart) if restart else None,
        health=_health(health) if health else Health(),
        strategy=parse_strategy(strategy) if strategy else Strategy(),
        hooks=_hooks(hooks) if hooks else {},
        connection=_connection(connection) if connection else Connection(),
        vars=_vars(variables) if variables else {},
        secrets=_secrets(secrets) if secrets else {},
        notify=_notify(notify) if notify else Notify(),
        preflight=_preflight(preflight) if preflight else Preflight(),
        cleanup_sudo=_cleanup_sudo(cleanup) if cleanup else False,
        artifacts=artifact_settings.parse_artifacts(artifacts) if artifacts else ArtifactStore(),
        watch=watch(watch_section, parse_analysis) if watch_section else None,
        resources=resources(resources_section) if resources_section else Resources(),
    )
    check_metric_secrets(playbook)
    return playbook


def validate_templates_exist(playbook: Playbook, templates_dir: Path) -> None:
    """Every `templates:` src must be a file under templates_dir with valid Jinja2 syntax."""
    for template in playbook.templates:
        where = template.where
        file, line, key = (where.file, where.line, where.key_path) if where else (None, None, None)
        path = templates_dir / template.src
        if not path.is_file():
            raise ConfigError(
                f"template file not found: {display_path(path)}",
                file=file,
                line=line,
                key_path=key,
                hint=f"create it, or fix src: (relative to {display_path(templates_dir)})",
            )
        check_template_file(path)
    bg, drain = playbook.strategy.blue_green, playbook.strategy.drain
    for section, lb in (
        ("blue_green", bg.load_balancer if bg else None),
        ("drain", drain.load_balancer if drain else None),
    ):
        if lb is None:
            continue
        path = templates_dir / lb.template
        if not path.is_file():
            where = lb.where
            raise ConfigError(
                f"load balancer template not found: {display_path(path)}",
                file=where.file if where else None,
                line=where.line if where else None,
                key_path=f"strategy.{section}.load_balancer.template",
                hint=f"create it, or fix template: (relative to {display_path(templates_dir)})",
            )
        check_template_file(path)


def _migrate(node: Node) -> Migrate:
    fields = section_fields(node, ("command", "run_on"), required=("command",))
    run_on = fields.get("run_on")
    return Migrate(
        command=checked_template(fields["command"]),
        run_on=run_on.text() if run_on else None,
    )


def _health(node: Node) -> Health:
    keys = ("http", "command", "timeout", "successes", "interval", "deadline")
    fields = section_fields(node, keys)
    http = fields.get("http")
    command = fields.get("command")
    defaults = Health()
    return Health(
        http=_http(http) if http else None,
        command=checked_template(command) if command else None,
        timeout=fields["timeout"].number(positive=True)
        if "timeout" in fields
        else defaults.timeout,
        successes=(
            fields["successes"].integer(minimum=1) if "successes" in fields else defaults.successes
        ),
        interval=(
            fields["interval"].number(positive=True) if "interval" in fields else defaults.interval
        ),
        deadline=(
            fields["deadline"].number(positive=True) if "deadline" in fields else defaults.deadline
        ),
    )


def _http(node: Node) -> HttpCheck:
    keys = ("url", "via", "expect_status", "expect_version")
    fields = section_fields(node, keys, required=("url",))
    status, version = fields.get("expect_status"), fields.get("expect_version")
    via = fields["via"].choice(("ssh", "local")) if "via" in fields else "ssh"
    return HttpCheck(
        url=checked_template(fields["url"]),
        via=cast(Literal["ssh", "local"], via),
        expect_status=status.integer(minimum=100, maximum=599) if status else 200,
        expect_version=version.boolean() if version else False,
    )


def _hooks(node: Node) -> dict[str, tuple[Hook, ...]]:
    hooks: dict[str, tuple[Hook, ...]] = {}
    for point, entry in node.mapping(HOOK_POINTS).items():
        if entry.is_null:
            continue
        # A lone command is accepted as a one-item list.
        items = entry.items() if isinstance(entry.value, list) else [entry]
        hooks[point] = tuple(_hook(item) for item in items)
    return hooks


def _hook(node: Node) -> Hook:
    if isinstance(node.value, str):
        return Hook(run=checked_template(node), where="remote")
    if not isinstance(node.value, dict):
        raise node.expected('a command, or a mapping {local: "..."} or {remote: "..."}')
    fields = node.mapping(("local", "remote"))
    if len(fields) != 1:
        raise node.error("expected exactly one of 'local' or 'remote'")
    ((where, command),) = fields.items()
    return Hook(run=checked_template(command), where=cast(Literal["local", "remote"], where))


def _connection(node: Node) -> Connection:
    keys = ("parallel", "connect_timeout", "command_timeout")
    fields = section_fields(node, keys)
    defaults = Connection()
    parallel = fields.get("parallel")
    connect, command = fields.get("connect_timeout"), fields.get("command_timeout")
    return Connection(
        parallel=parallel.integer(minimum=1) if parallel else defaults.parallel,
        connect_timeout=connect.number(positive=True) if connect else defaults.connect_timeout,
        command_timeout=command.number(positive=True) if command else defaults.command_timeout,
    )


def _notify(node: Node) -> Notify:
    """`notify: {webhook: {url_env: VAR, timeout: 5}}`."""
    webhook = section_fields(node, ("webhook",)).get("webhook")
    if webhook is None:
        return Notify()
    fields = section_fields(webhook, ("url_env", "timeout"), required=("url_env",))
    name = fields["url_env"].text()
    if not _ENV_VAR.fullmatch(name):
        raise fields["url_env"].error(
            f"expected an environment variable name, got {name!r}",
            hint="the URL itself is a secret: put it in that variable, not in the playbook",
        )
    timeout = fields.get("timeout")
    return Notify(
        webhook_url_env=name,
        timeout=timeout.number(positive=True) if timeout else Notify().timeout,
        where=fields["url_env"].location(),
    )


def _preflight(node: Node) -> Preflight:
    """`preflight: {strict: true}`: the checklist's warnings block, as with `--strict`."""
    strict = section_fields(node, ("strict",)).get("strict")
    if strict is None:
        return Preflight()
    return Preflight(strict=strict.boolean(), where=strict.location())


def _cleanup_sudo(node: Node) -> bool:
    """`cleanup: {sudo: true}`: releases holding files the app wrote as root are pruned with
    `sudo -n rm -rf` (the deploy user needs passwordless sudo for rm)."""
    sudo = section_fields(node, ("sudo",)).get("sudo")
    return sudo.boolean() if sudo is not None else False


def _secrets(node: Node) -> dict[str, SecretSource]:
    """`NAME: {env: VAR}` or `NAME: {command: "..."}`. Only where a value comes from is read
    here; the values are read at plan time (`deployer.secrets.resolve_secrets`)."""
    result: dict[str, SecretSource] = {}
    hint = 'write NAME: {env: VARIABLE} or NAME: {command: "sops -d ... | jq -r ..."}'
    for name, child in node.mapping(hint=hint).items():
        if not name.isidentifier():
            raise child.error(
                "not a valid secret name", hint="use letters, digits and '_', as in DB_PASSWORD"
            )
        if not isinstance(child.value, dict):
            raise child.expected("a mapping", hint)
        fields = section_fields(child, ("env", "command"))
        if len(fields) != 1:
            raise child.error("expected exactly one of 'env' or 'command'", hint=hint)
        env, command = fields.get("env"), fields.get("command")
        if env is not None and not _ENV_VAR.fullmatch(env.text()):
            raise env.error(f"not an environment variable name: {env.value!r}")
        result[name] = SecretSource(
            name=name,
            env=env.text() if env else None,
            command=command.text() if command else None,
            where=child.location(),
        )
    return result


def _vars(node: Node) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, child in node.mapping().items():
        if not key.isidentifier():
            raise child.error("not a valid variable name", hint="use letters, digits and '_'")
        result[key] = child.plain()
    return result
