"""The playbook (playbooks/*.yml) read and validated into a frozen Playbook.

Every key is checked here, once: unknown keys, wrong types and bad Jinja2 syntax fail at
load with file, line and key path. Nothing is rendered here; that happens per host.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any, Literal, cast

# A module reference, not its function: deployer.artifacts imports the config package too.
from deployer.artifacts import settings as artifact_settings
from deployer.config.metrics import ANALYSIS_KEYS, analysis_metrics, check_metric_secrets, watch
from deployer.config.model import (
    HOOK_POINTS,
    Analysis,
    ArtifactStore,
    BlueGreen,
    Canary,
    Connection,
    Drain,
    Health,
    Hook,
    HttpCheck,
    LoadBalancer,
    Migrate,
    Notify,
    Playbook,
    Preflight,
    Resources,
    SecretSource,
    Shared,
    Source,
    Strategy,
    Template,
    TemplateFile,
)
from deployer.config.render import check_template, check_template_file
from deployer.config.resources import resources
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
_PERCENT = re.compile(r"\s*(\d+)\s*%\s*")
_OCTAL = re.compile(r"(?:0o)?([0-7]{1,4})")
_KINDS = ("rolling", "canary", "blue_green")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_playbook(path: Path) -> Playbook:
    shown = display_path(path)
    return parse_playbook(read_text(path, shown), shown)


def parse_playbook(text: str, path: str) -> Playbook:
    """Validate a playbook's YAML text; `path` is how the file is named in errors."""
    root = Node.root(load_yaml(text, path), path)
    fields = _fields(root, _TOP_KEYS, required=("application", "deploy_to", "source"))
    section = fields.get

    application = fields["application"].text()
    if not _APPLICATION.fullmatch(application):
        raise fields["application"].error(
            f"invalid name {application!r}",
            hint="start with a lowercase letter or digit; then a-z, 0-9, '_', '.', '-'",
        )
    deploy_to = _template(fields["deploy_to"])
    if not deploy_to.text.startswith(("/", "{")):
        raise fields["deploy_to"].error(f"must be an absolute path, got {deploy_to.text!r}")

    keep, shared, templates = section("keep_releases"), section("shared"), section("templates")
    migrate, restart, health = section("migrate"), section("restart"), section("health")
    strategy, hooks, connection = section("strategy"), section("hooks"), section("connection")
    variables, secrets, notify = section("vars"), section("secrets"), section("notify")
    preflight, cleanup = section("preflight"), section("cleanup")
    artifacts = section("artifacts")
    watch_section, resources_section = section("watch"), section("resources")
    shared_paths = _shared(shared) if shared else Shared()
    template_files = tuple(_template_file(item) for item in templates.items()) if templates else ()
    _check_template_dests(template_files, shared_paths)
    playbook = Playbook(
        path=path,
        application=application,
        deploy_to=deploy_to,
        source=_source(fields["source"]),
        keep_releases=keep.integer(minimum=1) if keep else 5,
        shared=shared_paths,
        templates=template_files,
        migrate=_migrate(migrate) if migrate else None,
        restart=_template(restart) if restart else None,
        health=_health(health) if health else Health(),
        strategy=_strategy(strategy) if strategy else Strategy(),
        hooks=_hooks(hooks) if hooks else {},
        connection=_connection(connection) if connection else Connection(),
        vars=_vars(variables) if variables else {},
        secrets=_secrets(secrets) if secrets else {},
        notify=_notify(notify) if notify else Notify(),
        preflight=_preflight(preflight) if preflight else Preflight(),
        cleanup_sudo=_cleanup_sudo(cleanup) if cleanup else False,
        artifacts=artifact_settings.parse_artifacts(artifacts) if artifacts else ArtifactStore(),
        watch=watch(watch_section, _analysis) if watch_section else None,
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


# ---------------------------------------------------------------- sections


def _fields(
    node: Node, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Node]:
    """A mapping's entries; an optional key left empty is treated as absent (its default)."""
    fields = node.mapping(allowed, required)
    return {key: child for key, child in fields.items() if key in required or not child.is_null}


def _template(node: Node) -> Template:
    template = Template(node.text(), node.location())
    check_template(template)
    return template


def _relative(node: Node) -> str:
    """A path inside a release or shared/: relative, and never climbing out with '..'."""
    text = node.text()
    if text.startswith("/"):
        raise node.error(f"must be a relative path, got {text!r}")
    if ".." in text.split("/"):
        raise node.error(f"must not contain '..', got {text!r}")
    normalized = posixpath.normpath(text)
    if normalized == ".":
        raise node.error(f"must name a file or directory, got {text!r}")
    return normalized


def _source(node: Node) -> Source:
    fields = _fields(node, ("path", "git", "ref", "subdir"))
    has_path, has_git = "path" in fields, "git" in fields
    if has_path == has_git:
        raise node.error(
            "expected exactly one of 'path' or 'git'",
            hint="path: a local directory; git: a repository whose ref is archived",
        )
    if has_path:
        for key in ("ref", "subdir"):
            if key in fields:
                raise fields[key].error("only valid with 'git'")
        return Source(path=fields["path"].text())
    ref, subdir = fields.get("ref"), fields.get("subdir")
    return Source(
        git_repo=fields["git"].text(),
        ref=ref.text() if ref else None,
        subdir=_relative(subdir) if subdir else None,
    )


def _shared(node: Node) -> Shared:
    fields = _fields(node, ("dirs", "files"))
    dirs, files = fields.get("dirs"), fields.get("files")
    return Shared(
        dirs=tuple(_relative(item) for item in dirs.items()) if dirs else (),
        files=tuple(_relative(item) for item in files.items()) if files else (),
    )


def _template_file(node: Node) -> TemplateFile:
    fields = _fields(node, ("src", "dest", "mode", "shared"), required=("src", "dest"))
    mode, shared = fields.get("mode"), fields.get("shared")
    return TemplateFile(
        src=_relative(fields["src"]),
        dest=_relative(fields["dest"]),
        mode=_mode(mode) if mode else 0o644,
        where=fields["src"].location(),
        shared=shared.boolean() if shared else False,
    )


def _check_template_dests(templates: tuple[TemplateFile, ...], shared: Shared) -> None:
    """A release template at or under a shared path would be replaced by the shared link
    right after it is written, silently: refuse it and point at `shared: true`."""
    for template in templates:
        if template.shared:
            continue
        for path in (*shared.dirs, *shared.files):
            if template.dest == path or template.dest.startswith(path + "/"):
                where = template.where
                raise ConfigError(
                    f"dest {template.dest!r} is under the shared path {path!r}, so the link to"
                    " shared/ would hide it",
                    file=where.file if where else None,
                    line=where.line if where else None,
                    key_path=where.key_path.removesuffix("src") + "dest" if where else None,
                    hint="add `shared: true` to write it into shared/ instead",
                )


def _mode(node: Node) -> int:
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads 0644 as octal but 644 as decimal 644 (= 0o1204): refuse the trap.
        if node.raw is not None and not node.raw.startswith("0"):
            raise node.error(
                f"{node.raw} is read as a decimal number",
                hint=f'write file modes as quoted octal strings, e.g. "0{node.raw}"',
            )
        mode = value
    elif isinstance(value, str) and (match := _OCTAL.fullmatch(value.strip())):
        mode = int(match.group(1), 8)
    else:
        raise node.expected('an octal file mode like "0644"')
    if not 0 <= mode <= 0o7777:
        raise node.error(f"must be between 0000 and 7777, got {oct(mode)}")
    return mode


def _migrate(node: Node) -> Migrate:
    fields = _fields(node, ("command", "run_on"), required=("command",))
    run_on = fields.get("run_on")
    return Migrate(
        command=_template(fields["command"]),
        run_on=run_on.text() if run_on else None,
    )


def _health(node: Node) -> Health:
    keys = ("http", "command", "timeout", "successes", "interval", "deadline")
    fields = _fields(node, keys)
    http = fields.get("http")
    command = fields.get("command")
    defaults = Health()
    return Health(
        http=_http(http) if http else None,
        command=_template(command) if command else None,
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
    fields = _fields(node, keys, required=("url",))
    status, version = fields.get("expect_status"), fields.get("expect_version")
    via = fields["via"].choice(("ssh", "local")) if "via" in fields else "ssh"
    return HttpCheck(
        url=_template(fields["url"]),
        via=cast(Literal["ssh", "local"], via),
        expect_status=status.integer(minimum=100, maximum=599) if status else 200,
        expect_version=version.boolean() if version else False,
    )


def _strategy(node: Node) -> Strategy:
    keys = ("kind", "serial", "max_fail_percentage", "pause", "rollback", "drain", *_KINDS[1:])
    fields = _fields(node, keys)
    defaults = Strategy()
    kind = fields["kind"].choice(_KINDS) if "kind" in fields else "rolling"
    for other in _KINDS[1:]:
        if other in fields and other != kind:
            raise fields[other].error(
                f"'{other}' settings given but kind is '{kind}'",
                hint=f"set kind: {other}, or remove this section",
            )
    serial = fields.get("serial")
    failures, pause = fields.get("max_fail_percentage"), fields.get("pause")
    rollback = fields["rollback"].choice(("all", "batch")) if "rollback" in fields else "all"
    section = fields.get(kind)
    if kind == "blue_green" and section is None:
        raise fields["kind"].error(
            "kind blue_green needs a blue_green section naming the load balancer",
            hint=f"add strategy.blue_green.{_LB_EXAMPLE}",
        )
    drain = fields.get("drain")
    if drain is not None and kind == "blue_green":
        raise drain.error(
            "drain applies to kind rolling or canary: blue-green moves traffic in one step",
            hint="remove strategy.drain",
        )
    return Strategy(
        kind=cast(Literal["rolling", "canary", "blue_green"], kind),
        canary=(_canary(section) if section else Canary()) if kind == "canary" else None,
        blue_green=_blue_green(section) if kind == "blue_green" and section else None,
        serial=_serial(serial) if serial else defaults.serial,
        max_fail_percentage=(
            failures.number(minimum=0, maximum=100) if failures else defaults.max_fail_percentage
        ),
        pause=pause.number(minimum=0) if pause else defaults.pause,
        rollback=cast(Literal["all", "batch"], rollback),
        drain=_drain(drain) if drain else None,
    )


def _canary(node: Node) -> Canary:
    fields = _fields(node, ("steps", "bake", "analysis"))
    defaults = Canary()
    steps, bake, analysis = fields.get("steps"), fields.get("bake"), fields.get("analysis")
    return Canary(
        steps=_serial(steps) if steps else defaults.steps,
        bake=bake.number(minimum=0) if bake else defaults.bake,
        analysis=_analysis(analysis) if analysis else Analysis(),
    )


def _analysis(node: Node) -> Analysis:
    keys = (
        "url",
        "via",
        "interval",
        "timeout",
        "min_samples",
        "max_error_rate",
        "max_error_rate_increase",
        "max_p50_ratio",
        "max_p95_ratio",
        "latency_floor_ms",
        *ANALYSIS_KEYS,
    )
    fields = node.mapping(keys)  # kept when empty: an empty rule means "do not check"
    defaults = Analysis()

    def rule(
        key: str, default: float | None, minimum: float, maximum: float | None = None
    ) -> float | None:
        if key not in fields:
            return default
        child = fields[key]
        return None if child.is_null else child.number(minimum=minimum, maximum=maximum)

    url = fields.get("url")
    via = fields.get("via")
    return Analysis(
        url=_template(url) if url and not url.is_null else None,
        via=(
            cast(Literal["ssh", "local"], via.choice(("ssh", "local")))
            if via and not via.is_null
            else None
        ),
        interval=rule("interval", defaults.interval, minimum=0.01) or defaults.interval,
        timeout=rule("timeout", defaults.timeout, minimum=0.01) or defaults.timeout,
        min_samples=(
            fields["min_samples"].integer(minimum=1)
            if "min_samples" in fields and not fields["min_samples"].is_null
            else defaults.min_samples
        ),
        max_error_rate=rule("max_error_rate", defaults.max_error_rate, minimum=0, maximum=100),
        max_error_rate_increase=rule(
            "max_error_rate_increase", defaults.max_error_rate_increase, minimum=0, maximum=100
        ),
        max_p50_ratio=rule("max_p50_ratio", defaults.max_p50_ratio, minimum=1),
        max_p95_ratio=rule("max_p95_ratio", defaults.max_p95_ratio, minimum=1),
        latency_floor_ms=rule("latency_floor_ms", defaults.latency_floor_ms, minimum=0) or 0.0,
        **analysis_metrics(fields),
    )


_GROUP = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LB_EXAMPLE = (
    "load_balancer: {hosts: lb, template: lb/upstream.conf.j2, dest: /etc/nginx/conf.d/app.conf,"
    ' validate: "nginx -t", reload: "nginx -s reload"}'
)


def _blue_green(node: Node) -> BlueGreen:
    fields = _fields(node, ("colors", "load_balancer"), required=("load_balancer",))
    defaults = BlueGreen()
    colors = defaults.colors
    if "colors" in fields:
        items = fields["colors"].items()
        if len(items) != 2:
            raise fields["colors"].error(
                f"expected two inventory group names, got {len(items)}", hint="e.g. [blue, green]"
            )
        names = []
        for item in items:
            name = item.text()
            if not _GROUP.fullmatch(name):
                raise item.error(f"not a group name: {name!r}")
            names.append(name)
        if names[0] == names[1]:
            raise fields["colors"].error(f"the two colors must differ, got {names[0]!r} twice")
        colors = (names[0], names[1])
    return BlueGreen(colors=colors, load_balancer=_load_balancer(fields["load_balancer"], colors))


def _drain(node: Node) -> Drain:
    fields = _fields(
        node, ("load_balancer", "timeout", "wait", "min_in_service"), required=("load_balancer",)
    )
    defaults = Drain()
    timeout, wait, floor = fields.get("timeout"), fields.get("wait"), fields.get("min_in_service")
    return Drain(
        load_balancer=_load_balancer(fields["load_balancer"], ()),
        timeout=timeout.number(minimum=0) if timeout else defaults.timeout,
        wait=cast(Literal["nginx", "timeout"], wait.choice(("nginx", "timeout")))
        if wait
        else defaults.wait,
        min_in_service=floor.integer(minimum=0) if floor else defaults.min_in_service,
    )


def _load_balancer(lb: Node, colors: tuple[str, ...]) -> LoadBalancer:
    if lb.is_null:
        raise lb.error("required", hint=_LB_EXAMPLE)
    lb_fields = _fields(
        lb,
        ("hosts", "template", "dest", "validate", "reload", "verify_url"),
        required=("template", "dest", "reload"),
    )
    hosts = lb_fields["hosts"].text() if "hosts" in lb_fields else LoadBalancer().hosts
    if hosts in colors:
        raise lb_fields["hosts"].error(f"{hosts!r} is one of the colors; the load balancer is not")
    dest = _template(lb_fields["dest"])
    if not dest.text.startswith(("/", "{")):
        raise lb_fields["dest"].error(f"must be an absolute path, got {dest.text!r}")
    validate, verify = lb_fields.get("validate"), lb_fields.get("verify_url")
    return LoadBalancer(
        hosts=hosts,
        template=_relative(lb_fields["template"]),
        dest=dest,
        validate=_template(validate) if validate else None,
        reload=_template(lb_fields["reload"]),
        verify_url=_template(verify) if verify else None,
        where=lb.location(),
    )


def _serial(node: Node) -> tuple[int | str, ...]:
    if isinstance(node.value, list):
        items = node.items()
        if not items:
            raise node.error("must list at least one batch size")
        return tuple(_batch_size(item) for item in items)
    return (_batch_size(node),)


def _batch_size(node: Node) -> int | str:
    """Ansible's serial: a host count (> 0) or a share of the hosts like "25%" (1-100)."""
    value = node.value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise node.error(f"must be greater than 0, got {value}")
        return value
    if isinstance(value, str) and (match := _PERCENT.fullmatch(value)):
        percent = int(match.group(1))
        if not 1 <= percent <= 100:
            raise node.error(f"percentage must be between 1% and 100%, got {value!r}")
        return f"{percent}%"
    raise node.expected('a count or a percentage like "25%"')


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
        return Hook(run=_template(node), where="remote")
    if not isinstance(node.value, dict):
        raise node.expected('a command, or a mapping {local: "..."} or {remote: "..."}')
    fields = node.mapping(("local", "remote"))
    if len(fields) != 1:
        raise node.error("expected exactly one of 'local' or 'remote'")
    ((where, command),) = fields.items()
    return Hook(run=_template(command), where=cast(Literal["local", "remote"], where))


def _connection(node: Node) -> Connection:
    keys = ("parallel", "connect_timeout", "command_timeout")
    fields = _fields(node, keys)
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
    webhook = _fields(node, ("webhook",)).get("webhook")
    if webhook is None:
        return Notify()
    fields = _fields(webhook, ("url_env", "timeout"), required=("url_env",))
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
    strict = _fields(node, ("strict",)).get("strict")
    if strict is None:
        return Preflight()
    return Preflight(strict=strict.boolean(), where=strict.location())


def _cleanup_sudo(node: Node) -> bool:
    """`cleanup: {sudo: true}`: releases holding files the app wrote as root are pruned with
    `sudo -n rm -rf` (the deploy user needs passwordless sudo for rm)."""
    sudo = _fields(node, ("sudo",)).get("sudo")
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
        fields = _fields(child, ("env", "command"))
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
