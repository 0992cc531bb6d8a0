"""Planning: which hosts, in which batches, running which remote steps. Pure functions of the
configuration and the release id; nothing here connects anywhere, so a dry run is a plan
printed, and every decision is unit-testable."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from deployer.config.model import Host, Inventory, Playbook, TemplateFile
from deployer.config.render import FileSecrets, host_variables, render, render_file
from deployer.errors import ConfigError
from deployer.remote.scripts import HostFiles, Layout, RenderedFile
from deployer.secrets import Secret, resolve_secrets

T = TypeVar("T")


def compute_batches(hosts: Sequence[T], serial: Sequence[int | str]) -> list[list[T]]:
    """Split hosts into batches the way Ansible's `serial` does.

    Each entry sizes one batch, as a count or a percentage of all hosts (rounded down, at
    least 1); the last entry repeats until every host is placed.
    """
    total = len(hosts)
    if total == 0:
        return []
    sizes = [_batch_size(entry, total) for entry in (serial or ["100%"])]
    batches: list[list[T]] = []
    start = 0
    index = 0
    while start < total:
        size = sizes[min(index, len(sizes) - 1)]
        batches.append(list(hosts[start : start + size]))
        start += size
        index += 1
    return batches


def canary_batches(hosts: Sequence[T], steps: Sequence[int | str]) -> list[list[T]]:
    """Split hosts into canary steps. Each step is the cumulative share of the hosts on the
    new release once it is done (a count or a percentage, rounded down, at least 1); a step
    that adds no host is dropped, and a last step taking every host is implied."""
    total = len(hosts)
    batches: list[list[T]] = []
    placed = 0
    for step in [*steps, "100%"]:
        target = min(total, _batch_size(step, total))
        if target > placed:
            batches.append(list(hosts[placed:target]))
            placed = target
    return batches


def _batch_size(entry: int | str, total: int) -> int:
    if isinstance(entry, str) and entry.endswith("%"):
        return max(1, math.floor(total * float(entry[:-1]) / 100))
    return max(1, int(entry))


def over_budget(batch_size: int, failed: int, max_fail_percentage: float) -> bool:
    """True when a batch's failures stop the rollout.

    As in Ansible, the rollout stops only when the failed share *exceeds* the allowance:
    with max_fail_percentage 25 and 4 hosts, 1 failure continues, 2 stop. Zero allows none.
    """
    if failed == 0:
        return False
    return failed * 100 > max_fail_percentage * batch_size


@dataclass(frozen=True)
class HostPlan:
    """Everything rendered for one host; the scripts are built from this."""

    host: Host
    layout: Layout
    env: Mapping[str, str]  # exported to remote commands (never secrets)
    restart: str | None
    migrate: str | None
    health_url: str | None
    health_command: str | None
    # Rendered templates: may hold secrets, so never in a repr or a traceback.
    host_files: HostFiles = field(repr=False)
    hooks: Mapping[str, tuple[tuple[str, str], ...]]  # point -> ((where, command), ...)
    analysis_url: str | None = None  # what a canary bake samples (default: the health URL)

    @property
    def name(self) -> str:
        return self.host.name


@dataclass(frozen=True)
class DeployPlan:
    env: str
    release_id: str
    run_id: str
    hosts: tuple[HostPlan, ...]
    batches: tuple[tuple[str, ...], ...]
    migrate_host: str | None
    playbook: Playbook
    # The resolved values, for whoever needs them (they print as *** anyway).
    secrets: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    # For the history records (delivery metrics): when the run began, and the commit time of
    # the release's commit (git sources), both UTC ISO-8601.
    started: str | None = None
    committed: str | None = None

    def without(self, names: set[str]) -> DeployPlan:
        """The plan minus some hosts (skipped as unreachable); empty batches dropped."""
        batches = tuple(tuple(n for n in b if n not in names) for b in self.batches)
        return replace(
            self,
            hosts=tuple(h for h in self.hosts if h.name not in names),
            batches=tuple(b for b in batches if b),
            migrate_host=None if self.migrate_host in names else self.migrate_host,
        )

    def host(self, name: str) -> HostPlan:
        for plan in self.hosts:
            if plan.name == name:
                return plan
        raise KeyError(name)


def build_plan(
    playbook: Playbook,
    hosts: Sequence[Host],
    *,
    env: str,
    release_id: str,
    run_id: str,
    templates_dir: Path,
    extra_vars: Mapping[str, object] | None = None,
    inventory: Inventory | None = None,
    secrets: Mapping[str, Secret] | None = None,
    project_root: Path | None = None,
    render_files: bool = True,
) -> DeployPlan:
    """Render the playbook for every selected host and cut the rollout into batches.
    Undefined variables fail here, with file, line and key, before anything connects.

    Secrets are resolved here, on this machine, once per plan, unless given (`secrets`); their
    commands run in `project_root` (default: the directory holding templates/). Without
    `render_files` (status, unlock, rollback: nothing is uploaded) templates are not rendered
    and secrets are not resolved, so those work without the secret store at hand."""
    if not render_files:
        secrets = {}
    elif secrets is None:
        secrets = resolve_secrets(playbook.secrets, project_root or templates_dir.parent)
    host_plans = tuple(
        _plan_host(
            playbook,
            host,
            env=env,
            release_id=release_id,
            templates_dir=templates_dir,
            extra=extra_vars or {},
            inventory=inventory,
            secrets=secrets if render_files else None,
        )
        for host in hosts
    )
    names = [h.name for h in hosts]
    canary = playbook.strategy.canary
    batches = (
        canary_batches(names, canary.steps)
        if canary
        else compute_batches(names, playbook.strategy.serial)
    )
    migrate_host = _migrate_host(playbook, hosts)
    return DeployPlan(
        env=env,
        release_id=release_id,
        run_id=run_id,
        hosts=host_plans,
        batches=tuple(tuple(b) for b in batches),
        migrate_host=migrate_host,
        playbook=playbook,
        secrets=secrets,
    )


def _plan_host(
    playbook: Playbook,
    host: Host,
    *,
    env: str,
    release_id: str,
    templates_dir: Path,
    extra: Mapping[str, object],
    inventory: Inventory | None,
    secrets: Mapping[str, Secret] | None,
) -> HostPlan:
    base = {**extra, "release_id": release_id, "env": env, "deploy_env": env}
    variables = host_variables(host, playbook, base, inventory=inventory)
    deploy_to = render(playbook.deploy_to, variables).strip()
    if not posixpath.isabs(deploy_to) or ".." in deploy_to.split("/"):
        raise ConfigError(
            f"must be an absolute path without '..', got {deploy_to!r} for host {host.name}",
            file=playbook.deploy_to.where.file,
            line=playbook.deploy_to.where.line,
            key_path=playbook.deploy_to.where.key_path,
        )
    layout = Layout(deploy_to.rstrip("/") or "/")
    release_path = layout.release(release_id)
    variables = {
        **variables,
        "deploy_to": layout.root,
        "release_path": release_path,
        "shared_path": layout.shared,
        "current_path": layout.current,
    }
    env_vars = {
        "RELEASE_ID": release_id,
        "DEPLOY_ENV": env,
        "DEPLOY_TO": layout.root,
        "RELEASE_PATH": release_path,
        "SHARED_PATH": layout.shared,
    }
    health = playbook.health
    analysis = playbook.strategy.canary.analysis if playbook.strategy.canary else None
    analysis_url = None
    if analysis and analysis.url:
        analysis_url = render(analysis.url, variables).strip()
    elif analysis and analysis.probes and not health.http:
        raise ConfigError(
            "a canary needs a URL to sample: set strategy.canary.analysis.url or health.http",
            file=playbook.path,
            key_path="strategy.canary.analysis.url",
        )
    hooks = {
        point: tuple((hook.where, render(hook.run, variables)) for hook in entries)
        for point, entries in playbook.hooks.items()
    }
    return HostPlan(
        host=host,
        layout=layout,
        env=env_vars,
        restart=render(playbook.restart, variables) if playbook.restart else None,
        migrate=render(playbook.migrate.command, variables) if playbook.migrate else None,
        health_url=render(health.http.url, variables).strip() if health.http else None,
        health_command=render(health.command, variables) if health.command else None,
        host_files=(
            _render_host_files(playbook, templates_dir, variables, secrets)
            if secrets is not None
            else HostFiles()
        ),
        hooks=hooks,
        analysis_url=analysis_url,
    )


def _render_host_files(
    playbook: Playbook,
    templates_dir: Path,
    variables: Mapping[str, object],
    secrets: Mapping[str, Secret],
) -> HostFiles:
    files: list[RenderedFile] = []
    for item in playbook.templates:
        used: set[str] = set()
        content = render_file(templates_dir / item.src, variables, FileSecrets(secrets, used))
        if used and item.mode & 0o007:
            raise _world_readable(item, sorted(used))
        files.append(RenderedFile(item.dest, item.mode, content.encode(), shared=item.shared))
    return HostFiles.pack(files)


def _world_readable(item: TemplateFile, used: list[str]) -> ConfigError:
    """A secret in a file every local user can read (or rewrite) is a leak: refuse it here."""
    where = item.where
    return ConfigError(
        f"{item.src} renders secret(s) {', '.join(used)} into a file open to every user"
        f" on the host (mode {item.mode:04o})",
        file=where.file if where else None,
        line=where.line if where else None,
        key_path=where.key_path.removesuffix("src") + "mode" if where else None,
        hint='set mode: "0600" (or "0640" for a group the app runs as)',
    )


def _migrate_host(playbook: Playbook, hosts: Sequence[Host]) -> str | None:
    if playbook.migrate is None or not hosts:
        return None
    run_on = playbook.migrate.run_on
    if run_on is None:
        return hosts[0].name
    for host in hosts:
        if host.name == run_on or run_on in host.groups:
            return host.name
    where = playbook.migrate.command.where
    raise ConfigError(
        f"migrate.run_on is {run_on!r} but no selected host is that host or in that group",
        file=where.file,
        hint=f"include a host of {run_on!r} in --limit, or change migrate.run_on",
    )
