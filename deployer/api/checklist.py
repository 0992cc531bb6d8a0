"""The pre-deployment checklist as an operation (`invoke preflight`): the policy from the
flags and the playbook, this machine's facts (source state, secrets, webhook), the hosts'
facts read without the lock. Uploads nothing, changes nothing on any host."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from deployer.api.building import build
from deployer.api.project import Loaded
from deployer.api.wiring import (
    Options,
    make_runner,
)
from deployer.errors import ConfigError
from deployer.events import Checklist, Event, EventBus, Notice, Subscriber
from deployer.plan import DeployPlan
from deployer.preflight import (
    GitState,
    LocalFacts,
    Policy,
    build_checklist,
    decide,
    gather_fleet,
    git_state,
    local_facts,
    parse_overrides,
)
from deployer.release import Release
from deployer.runner import new_run_id
from deployer.secrets import Secret, resolve_secrets


def checklist_policy(
    loaded: Loaded, override: str | None, strict: bool, lenient: bool = False
) -> Policy:
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
    policy = checklist_policy(loaded, override, strict)
    run_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="deployer-build-") as tmp:
        release = build(loaded, Path(tmp), ref)
        secrets, errors = resolve_each_secret(loaded)
        plan: DeployPlan | None = None
        try:
            plan = loaded.plan(release.id, run_id, secrets=secrets)
        except ConfigError as exc:
            errors.append(str(exc))
            # Hosts can still be asked when only a template file failed to render.
            with contextlib.suppress(ConfigError):
                plan = loaded.plan(release.id, run_id, render_files=False)
        local = this_machine(loaded, plan, release, config_errors=errors)
        # Only the checklist (and notices) reach the reporters: no step-by-step noise.
        bus = EventBus()
        for reporter in options.reporters:
            bus.subscribe(only_checklist(reporter))
        fleet = None
        if plan is not None:
            runner = make_runner(loaded, options, bus)
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


def this_machine(
    loaded: Loaded, plan: DeployPlan | None, release: Release, config_errors: Sequence[str] = ()
) -> LocalFacts:
    """The checklist's facts from this machine, for a deploy and for `invoke preflight`."""
    return local_facts(
        plan,
        release,
        loaded.playbook,
        env=loaded.env,
        source=source_state(loaded, release),
        notify_set=webhook_url_set(loaded),
        notify_plain_http=webhook_url(loaded).lower().startswith("http://"),
        config_errors=config_errors,
    )


def only_checklist(reporter: Subscriber) -> Subscriber:
    def forward(event: Event) -> None:
        if isinstance(event, Checklist | Notice):
            reporter(event)

    return forward


def resolve_each_secret(loaded: Loaded) -> tuple[dict[str, Secret], list[str]]:
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


def source_state(loaded: Loaded, release: Release) -> GitState | str:
    source = loaded.playbook.source
    if source.git_repo is None or release.commit is None:
        return source.path or ""
    return git_state(
        loaded.project.root / source.git_repo,
        release.commit,
        subdir=source.subdir,
        exclude=[loaded.project.runs],
    )


def webhook_url_set(loaded: Loaded) -> bool:
    return bool(webhook_url(loaded))


def webhook_url(loaded: Loaded) -> str:
    name = loaded.playbook.notify.webhook_url_env
    return (os.environ.get(name) or "") if name else ""
