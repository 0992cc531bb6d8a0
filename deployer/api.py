"""The operations a user runs (deploy, rollback, status, releases, unlock), wired from a
project directory: load and validate config, build the release, plan, then hand the plan to
the orchestrator with a transport and reporters. Tasks call these and nothing deeper."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deployer.bluegreen import deploy as run_blue_green
from deployer.bluegreen import rollback as run_blue_green_rollback
from deployer.config import (
    Host,
    Inventory,
    Playbook,
    load_inventory,
    load_playbook,
    select_hosts,
    validate_templates_exist,
)
from deployer.config.ansible.listing import host_listing
from deployer.config.ansible.listing import inventory_listing as list_inventory
from deployer.delivery import ROLLBACK_WINDOW, Stats, compute, merge_runs
from deployer.deploy import deploy as run_deploy
from deployer.drill import DrillResult, Smoke
from deployer.drill import drill as run_drill
from deployer.dryrun import describe, describe_traffic
from deployer.errors import ConfigError, PreflightError, ReleaseError
from deployer.events import Checklist, Event, EventBus, Notice, Subscriber
from deployer.history import Run, runs
from deployer.hooks import run_build_hooks
from deployer.inspect import HostStatus, gather, gather_history, with_colors
from deployer.locking import force_unlock
from deployer.plan import DeployPlan, HostPlan, build_plan
from deployer.preflight import (
    Checks,
    GitState,
    Policy,
    build_checklist,
    decide,
    gather_fleet,
    git_state,
    local_facts,
    parse_overrides,
)
from deployer.release import Release, build_release, validate_release_id
from deployer.remote.ssh import SSHTransport
from deployer.remote.transport import Transport
from deployer.reporters import RunRecorder
from deployer.reporters.webhook import WebhookReporter
from deployer.rollback import rollback as run_rollback
from deployer.runner import Runner, new_run_id, utc_now
from deployer.secrets import Secret, mask, resolve_secrets
from deployer.strategies.drain import DrainPlan, describe_drain, plan_drain
from deployer.traffic import TrafficPlan, plan_traffic

PLACEHOLDER_RELEASE = "00000000T000000Z-0000000"


@dataclass(frozen=True)
class Project:
    """A deploy project: `inventories/`, `playbooks/`, `templates/` under one root."""

    root: Path

    @property
    def inventories(self) -> Path:
        return self.root / "inventories"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def runs(self) -> Path:
        return self.root / ".deploy-runs"

    def playbook_path(self, name: str) -> Path:
        path = self.root / "playbooks" / f"{name}.yml"
        if not path.exists():
            raise ConfigError(
                f"playbook '{name}' not found",
                file=str(path),
                hint="create playbooks/deploy.yml or pass --playbook NAME",
            )
        return path


@dataclass(frozen=True)
class Loaded:
    project: Project
    env: str
    inventory: Inventory
    playbook: Playbook
    hosts: tuple[Host, ...]

    def plan(
        self,
        release_id: str,
        run_id: str,
        *,
        render_files: bool = True,
        secrets: Mapping[str, Secret] | None = None,
    ) -> DeployPlan:
        """The plan for one release. Without `render_files` (nothing is uploaded: status,
        unlock, rollback) templates are not rendered and secrets not resolved. `secrets`:
        already resolved (default: resolved here)."""
        return build_plan(
            self.playbook,
            self.hosts,
            env=self.env,
            release_id=release_id,
            run_id=run_id,
            templates_dir=self.project.templates,
            inventory=self.inventory,
            project_root=self.project.root,
            render_files=render_files,
            secrets=secrets,
        )


@dataclass(frozen=True)
class Options:
    """How to connect and whom to tell."""

    reporters: Sequence[Subscriber] = ()
    accept_new_host_keys: bool = False
    transport: Transport | None = None  # tests may inject one; default SSH


def load(
    project: Project, env: str, *, limit: str | None = None, playbook: str = "deploy"
) -> Loaded:
    """Load and validate everything; fails before any connection."""
    inventory = load_inventory(project.inventories, env)
    book = load_playbook(project.playbook_path(playbook))
    validate_templates_exist(book, project.templates)
    if book.notify.webhook_url_env and (url := os.environ.get(book.notify.webhook_url_env)):
        mask(url)  # masked before any hook runs: local hooks inherit the environment
    hosts = select_hosts(inventory, limit)
    return Loaded(project, env, inventory, book, hosts)


def load_inventory_only(project: Project, env: str) -> Inventory:
    return load_inventory(project.inventories, env)


def inventory_listing(project: Project, env: str, *, host: str | None = None) -> dict[str, Any]:
    """What the inventory holds, in `ansible-inventory --list` shape (`--host`: one host's
    variables), secret-named values masked. Reads files only; connects to nothing."""
    inventory = load_inventory(project.inventories, env)
    return host_listing(inventory, host) if host is not None else list_inventory(inventory)


def _bus(options: Options, record_dir: Path | None) -> EventBus:
    bus = EventBus()
    for reporter in options.reporters:
        bus.subscribe(reporter)
    if record_dir is not None:
        bus.subscribe(RunRecorder(record_dir))
    return bus


@contextlib.contextmanager
def _notifying(loaded: Loaded, bus: EventBus) -> Iterator[None]:
    """Subscribe the playbook's webhook for the length of a run, then flush it (bounded)."""
    notify = loaded.playbook.notify
    if notify.webhook_url_env is None:
        yield
        return
    url = os.environ.get(notify.webhook_url_env)
    if not url:
        where = notify.where
        raise ConfigError(
            f"environment variable {notify.webhook_url_env} is not set",
            file=where.file if where else None,
            line=where.line if where else None,
            key_path="notify.webhook.url_env",
            hint=f"export {notify.webhook_url_env}=<webhook URL> (in CI, from its secret store)",
        )
    webhook = WebhookReporter(url, timeout=notify.timeout)
    bus.subscribe(webhook)
    try:
        yield
    finally:
        webhook.close(timeout=10)


def _runner(loaded: Loaded, options: Options, bus: EventBus) -> Runner:
    conn = loaded.playbook.connection
    transport = options.transport or SSHTransport(
        connect_timeout=conn.connect_timeout, accept_new_host_keys=options.accept_new_host_keys
    )
    return Runner(transport, bus, parallel=conn.parallel, command_timeout=conn.command_timeout)


def release_time() -> datetime | None:
    """The release time: SOURCE_DATE_EPOCH when set (reproducible builds), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), UTC)
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds, got {epoch!r}") from None


def build(
    loaded: Loaded, work_dir: Path, ref: str | None = None, now: datetime | None = None
) -> Release:
    source = loaded.playbook.source
    root = loaded.project.root
    if source.git_repo is not None:
        return build_release(
            git_repo=root / source.git_repo,
            ref=ref or source.ref or "HEAD",
            subdir=source.subdir,
            work_dir=work_dir,
            now=now or release_time(),
        )
    if ref is not None:
        raise ReleaseError(
            f"--ref {ref} given, but {loaded.playbook.path} deploys a directory"
            f" ({source.path}), not a git repository",
            hint="drop --ref, or set source: {git: ., ref: main} in the playbook",
        )
    assert source.path is not None
    return build_release(
        source_dir=root / source.path, work_dir=work_dir, now=now or release_time()
    )


def _policy(loaded: Loaded, override: str | None, strict: bool, lenient: bool = False) -> Policy:
    """What stops a run besides critical failures: `--override`, and `--strict` ORed with the
    playbook's `preflight: {strict: true}` (the flag can add strictness, never remove it)."""
    setting = loaded.playbook.preflight
    strict_by = "--strict" if strict else ""
    if setting.strict and not strict:
        strict_by = str(setting.where) if setting.where else f"{loaded.playbook.path}: preflight"
    return Policy(
        overrides=parse_overrides(override),
        strict=strict or setting.strict,
        strict_by=strict_by,
        lenient=lenient,
    )


def deploy(
    loaded: Loaded,
    options: Options,
    *,
    ref: str | None = None,
    dry_run: bool = False,
    skip_unreachable: bool = False,
    resume: bool = False,
    override: str | None = None,
    strict: bool = False,
) -> dict[str, str | None] | str:
    """Deploy; with dry_run, return the printed plan instead and connect to nothing. With
    resume, rebuild the release of the last unfinished deploy and bring every host to it.

    The pre-deployment checklist runs once the lock is taken: a critical failure stops the
    deploy; so does any other failure unless `override` names it ("health,rollback" or
    "all-warnings"), and with `strict` any warning too. Resuming, only critical ones stop."""
    policy = _policy(loaded, override, strict, lenient=resume)
    if loaded.playbook.strategy.kind == "blue_green" and (resume or skip_unreachable):
        raise ConfigError(
            "--resume and --skip-unreachable do not apply to a blue-green deploy: it deploys"
            " a whole color, and traffic moves only once that color is healthy",
            file=loaded.playbook.path,
            key_path="strategy.kind",
            hint=f"run `invoke deploy --env {loaded.env}` again: it redeploys the idle color",
        )
    run_id = new_run_id()
    started = utc_now()
    with tempfile.TemporaryDirectory(prefix="deployer-build-") as tmp:
        resumed = _resumable(loaded) if resume else None
        if not dry_run:
            # The release id is not known yet: RELEASE_ID is the placeholder here.
            before = loaded.plan(PLACEHOLDER_RELEASE, run_id, render_files=False)
            run_build_hooks(before.hosts, "before_build")
        if resumed is not None:
            release = _rebuild(loaded, Path(tmp), resumed)
        else:
            release = build(loaded, Path(tmp), ref)
        plan = replace(
            loaded.plan(release.id, run_id),
            started=started,
            committed=_iso(release.committed) if release.committed else None,
        )
        traffic = _traffic(loaded, plan)
        plan, drain = _drain(loaded, plan)
        if dry_run:
            return (
                describe(plan, release)
                + (describe_traffic(traffic) if traffic else "")
                + (describe_drain(drain) if drain else "")
            )
        run_build_hooks(plan.hosts, "after_build")
        local = local_facts(
            plan,
            release,
            loaded.playbook,
            env=loaded.env,
            source=_source_state(loaded, release),
            notify_set=_webhook_url_set(loaded),
            notify_plain_http=_webhook_url(loaded).lower().startswith("http://"),
        )
        bus = _bus(options, loaded.project.runs)
        runner = _runner(loaded, options, bus)
        try:
            with _notifying(loaded, bus):
                if traffic is not None:
                    return run_blue_green(
                        plan, traffic, release, runner, bus, checks=Checks(local, policy)
                    )
                return run_deploy(
                    plan,
                    release,
                    runner,
                    bus,
                    skip_unreachable=skip_unreachable,
                    resume_from=resumed["run_id"] if resumed else None,
                    checks=Checks(local, policy),
                    drain=drain,
                )
        finally:
            runner.close()


def preflight(
    loaded: Loaded,
    options: Options,
    *,
    ref: str | None = None,
    override: str | None = None,
    strict: bool = False,
) -> Checklist:
    """The pre-deployment checklist without deploying: builds the release locally, renders
    the plan (an undefined variable or missing secret becomes a failed item, not an error),
    asks every host for its facts without taking the lock, probes the health of each host
    running a release. Uploads nothing, changes nothing on any host."""
    policy = _policy(loaded, override, strict)
    run_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="deployer-build-") as tmp:
        release = build(loaded, Path(tmp), ref)
        secrets, errors = _resolve_each_secret(loaded)
        plan: DeployPlan | None = None
        try:
            plan = loaded.plan(release.id, run_id, secrets=secrets)
        except ConfigError as exc:
            errors.append(str(exc))
            # Hosts can still be asked when only a template file failed to render.
            with contextlib.suppress(ConfigError):
                plan = loaded.plan(release.id, run_id, render_files=False)
        local = local_facts(
            plan,
            release,
            loaded.playbook,
            env=loaded.env,
            source=_source_state(loaded, release),
            notify_set=_webhook_url_set(loaded),
            notify_plain_http=_webhook_url(loaded).lower().startswith("http://"),
            config_errors=errors,
        )
        # Only the checklist (and notices) reach the reporters: no step-by-step noise.
        bus = EventBus()
        for reporter in options.reporters:
            bus.subscribe(_only_checklist(reporter))
        fleet = None
        if plan is not None:
            runner = _runner(loaded, options, bus)
            try:
                fleet = gather_fleet(
                    runner,
                    plan.hosts,
                    loaded.playbook.health,
                    release=plan.release_id,
                    keep=loaded.playbook.keep_releases,
                )
            finally:
                runner.close()
        checklist = decide(build_checklist(local, fleet), policy)
        bus.emit(checklist)
        return checklist


def _only_checklist(reporter: Subscriber) -> Subscriber:
    def forward(event: Event) -> None:
        if isinstance(event, Checklist | Notice):
            reporter(event)

    return forward


def _resolve_each_secret(loaded: Loaded) -> tuple[dict[str, Secret], list[str]]:
    """Every secret that resolves, and why each other one does not (all of them, not only
    the first). An unresolved one renders as empty here so that templates are still checked."""
    secrets: dict[str, Secret] = {}
    errors: list[str] = []
    for name, source in loaded.playbook.secrets.items():
        try:
            secrets.update(resolve_secrets({name: source}, loaded.project.root))
        except ConfigError as exc:
            errors.append(str(exc))
            secrets[name] = Secret("")
    return secrets, errors


def _source_state(loaded: Loaded, release: Release) -> GitState | str:
    source = loaded.playbook.source
    if source.git_repo is None or release.commit is None:
        return source.path or ""
    return git_state(
        loaded.project.root / source.git_repo,
        release.commit,
        subdir=source.subdir,
        exclude=[loaded.project.runs],
    )


def _webhook_url_set(loaded: Loaded) -> bool:
    return bool(_webhook_url(loaded))


def _webhook_url(loaded: Loaded) -> str:
    name = loaded.playbook.notify.webhook_url_env
    return (os.environ.get(name) or "") if name else ""


def _resumable(loaded: Loaded) -> dict[str, Any]:
    """The last deploy of this environment, if it did not bring every host to its release
    (interrupted, killed, failed, or hosts skipped as unreachable)."""
    runs = []
    for path in loaded.project.runs.glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("env") == loaded.env and record.get("action") == "deploy":
            runs.append(record)
    hint = f"start a new one: invoke deploy --env {loaded.env}"
    if not runs:
        raise ConfigError(f"no recorded deploy of {loaded.env} to resume", hint=hint)
    last: dict[str, Any] = max(runs, key=lambda r: r.get("started") or 0)
    releases = last.get("releases") or {}
    everywhere = all(releases.get(h) == last.get("release") for h in last.get("hosts", {}))
    if last.get("ok") is True and everywhere:
        raise ConfigError(
            f"the last deploy of {loaded.env} ({last.get('release')}, run {last.get('run_id')})"
            " finished on every host: nothing to resume",
            hint=hint,
        )
    if not last.get("source") or last.get("built_at") is None:
        raise ConfigError(f"run {last.get('run_id')} did not record its source", hint=hint)
    return last


def _rebuild(loaded: Loaded, work_dir: Path, run: dict[str, Any]) -> Release:
    source = str(run["source"])
    ref = None if source.startswith("dir:") else source
    release = build(loaded, work_dir, ref, now=datetime.fromtimestamp(int(run["built_at"]), UTC))
    if release.id != run.get("release"):
        raise ReleaseError(
            f"cannot rebuild {run.get('release')} of run {run.get('run_id')}: the source changed"
            f" since (it now builds {release.id})",
            hint=f"deploy afresh: invoke deploy --env {loaded.env}",
        )
    return release


def rollback(loaded: Loaded, options: Options, *, to: str | None = None) -> dict[str, str | None]:
    """Back to the previous release; for a blue-green playbook, traffic back to the other
    color (whose hosts still run the previous release) in one step."""
    if to is not None:
        to = validate_release_id(to)
    run_id = new_run_id()
    traffic = None
    plan = loaded.plan(PLACEHOLDER_RELEASE, run_id, render_files=False)
    if loaded.playbook.strategy.kind == "blue_green":
        traffic = _traffic(loaded, plan)
    _, drain = _drain(loaded, plan)
    bus = _bus(options, loaded.project.runs)
    runner = _runner(loaded, options, bus)
    try:
        with _notifying(loaded, bus):
            if traffic is not None:
                return run_blue_green_rollback(plan, traffic, runner, bus, run_id=run_id, to=to)
            return run_rollback(
                lambda rid: _drain(loaded, loaded.plan(rid, run_id, render_files=False))[0],
                runner,
                bus,
                run_id=run_id,
                to=to,
                drain=drain,
            )
    finally:
        runner.close()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_production(loaded: Loaded) -> bool:
    """An environment the inventory or playbook marks `production: true` (a variable, in the
    inventory's vars or the playbook's), or one named production or prod."""
    marked = loaded.playbook.vars.get("production") is True or any(
        h.vars.get("production") is True for h in loaded.hosts
    )
    return marked or loaded.env in ("production", "prod")


def drill(
    loaded: Loaded,
    options: Options,
    *,
    hold: float,
    smoke: Smoke | None = None,
    schema_ok: bool = False,
    yes: bool = False,
) -> DrillResult:
    """A rehearsed rollback and roll-forward (`deployer.drill`). Refuses a production
    environment without `yes`, and a blue-green playbook (its rollback is a traffic switch)."""
    if is_production(loaded) and not yes:
        raise PreflightError(
            f"{loaded.env} is marked as production: a drill switches every host back and forth",
            hint=f"run it deliberately: `invoke drill --env {loaded.env} --yes`",
        )
    if loaded.playbook.strategy.kind == "blue_green":
        raise ConfigError(
            "a drill rehearses a rolling rollback; a blue-green playbook rolls back by"
            " switching traffic, which `invoke rollback` already does in one step",
            file=loaded.playbook.path,
            key_path="strategy.kind",
        )
    run_id = new_run_id()
    bus = _bus(options, loaded.project.runs)
    runner = _runner(loaded, options, bus)
    try:
        with _notifying(loaded, bus):
            return run_drill(
                lambda rid: loaded.plan(rid, run_id, render_files=False),
                runner,
                bus,
                run_id=run_id,
                hold=hold,
                smoke=smoke,
                schema_ok=schema_ok,
            )
    finally:
        runner.close()


def delivery_stats(
    loaded: Loaded,
    options: Options,
    *,
    since: timedelta | None = None,
    rollback_window: timedelta = ROLLBACK_WINDOW,
    now: datetime | None = None,
) -> tuple[Stats, dict[str, str]]:
    """The four DORA keys from every host's own records (`deployer.delivery`), and the hosts
    that could not be read."""
    bus = _bus(options, None)
    runner = _runner(loaded, options, bus)
    try:
        found = gather_history(runner, _read_only_plans(loaded))
    finally:
        runner.close()
    records = {h: r for h, r in found.items() if not isinstance(r, BaseException)}
    errors = {h: str(r) for h, r in found.items() if isinstance(r, BaseException)}
    stats = compute(
        merge_runs(records),
        now=now or datetime.now(UTC).replace(microsecond=0),
        since=since,
        rollback_window=rollback_window,
    )
    return stats, errors


def _traffic(loaded: Loaded, plan: DeployPlan) -> TrafficPlan | None:
    """Blue-green: the colors, the load balancer(s) and their rendered configs (pure)."""
    if loaded.playbook.strategy.kind != "blue_green":
        return None
    return plan_traffic(plan, loaded.inventory, loaded.project.templates)


def _drain(loaded: Loaded, plan: DeployPlan) -> tuple[DeployPlan, DrainPlan | None]:
    """With strategy.drain: the app hosts' plan (load balancers set aside) and the drain
    plan (pure); else the plan as it is."""
    found = plan_drain(plan, loaded.inventory, loaded.project.templates)
    return found if found else (plan, None)


def _read_only_plans(loaded: Loaded) -> tuple[HostPlan, ...]:
    return loaded.plan(PLACEHOLDER_RELEASE, new_run_id(), render_files=False).hosts


def status(loaded: Loaded, options: Options, *, health: bool = True) -> list[HostStatus]:
    """Each host's state; for a blue-green playbook each row also carries the host's color
    and the live color its load balancer recorded."""
    bus = _bus(options, None)
    runner = _runner(loaded, options, bus)
    try:
        rows = gather(
            runner,
            _read_only_plans(loaded),
            loaded.playbook.health if health else None,
            loaded.playbook.resources,
        )
    finally:
        runner.close()
    bg = loaded.playbook.strategy.blue_green
    if bg is None:
        return rows
    return with_colors(rows, bg.colors, loaded.inventory, bg.load_balancer.hosts)


def history(loaded: Loaded, options: Options) -> tuple[list[Run], dict[str, str]]:
    """The fleet's audit trail from the hosts themselves: every recorded run, oldest first,
    with each host's result; and the hosts that could not be read, with why."""
    bus = _bus(options, None)
    runner = _runner(loaded, options, bus)
    try:
        found = gather_history(runner, _read_only_plans(loaded))
    finally:
        runner.close()
    records = {h: r for h, r in found.items() if not isinstance(r, BaseException)}
    errors = {h: str(r) for h, r in found.items() if isinstance(r, BaseException)}
    return runs(records), errors


def unlock(loaded: Loaded, options: Options) -> dict[str, object]:
    bus = _bus(options, None)
    runner = _runner(loaded, options, bus)
    try:
        return dict(force_unlock(runner, _read_only_plans(loaded)))
    finally:
        runner.close()


def host_names(hosts: Iterable[Host]) -> list[str]:
    return [h.name for h in hosts]
