"""Gathering the checklist's facts. It only reads: this machine's release, plan, settings and
git state; the hosts' `prepare` facts without the lock, and one health probe each. It never
takes the lock, uploads or changes a host."""

from __future__ import annotations

import posixpath
import subprocess
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from deployer.config.model import Health, Playbook
from deployer.errors import DeployerError
from deployer.facts import HostFacts, parse_facts
from deployer.health import Probe
from deployer.plan import DeployPlan, HostPlan
from deployer.preflight.model import FleetFacts, GitState, LocalFacts
from deployer.probe import probe_once
from deployer.release import Release
from deployer.remote import scripts
from deployer.runner import Runner

BLOCK_KB = 4  # files take whole blocks (pages, on tmpfs) on the host


def local_facts(
    plan: DeployPlan | None,
    release: Release,
    playbook: Playbook,
    *,
    env: str,
    source: GitState | str,
    notify_set: bool,
    notify_plain_http: bool = False,
    config_errors: Sequence[str] = (),
) -> LocalFacts:
    """Facts from this machine: the built release, the rendered plan, the source, settings."""
    migrate = None
    if plan is not None and plan.migrate_host is not None:
        command = plan.host(plan.migrate_host).migrate
        migrate = (plan.migrate_host, command) if command else None
    return LocalFacts(
        env=env,
        release_id=release.id,
        needed_kb=needed_kb(release),
        release_paths=release_paths(release, playbook),
        migrate=migrate,
        config_errors=tuple(config_errors),
        rendered_hosts=len(plan.hosts) if plan else 0,
        secrets=len(plan.secrets) if plan else 0,
        planned=plan is not None,
        source=source,
        notify_env=playbook.notify.webhook_url_env,
        notify_set=notify_set,
        notify_plain_http=notify_plain_http,
        health_configured=bool(playbook.health.http or playbook.health.command),
        cleanup_sudo=playbook.cleanup_sudo,
        resource_limits=playbook.resources.warn,
    )


def needed_kb(release: Release) -> int:
    """About how much a host needs while staging: the archive and the unpacked tree."""
    blocks = sum(-(-entry.size // (BLOCK_KB * 1024)) or 1 for entry in release.files.values())
    return -(-release.archive_size // 1024) + blocks * BLOCK_KB


def release_paths(release: Release, playbook: Playbook) -> frozenset[str]:
    """Every file and directory a staged release has: its files, templates, shared links."""
    files = [
        *release.files,
        "MANIFEST",
        *(t.dest for t in playbook.templates),
        *playbook.shared.dirs,
        *playbook.shared.files,
    ]
    paths = set()
    for path in files:
        while path and path not in paths:
            paths.add(path)
            path = posixpath.dirname(path)
    return frozenset(paths)


def git_state(
    repo: Path, commit: str, *, subdir: str | None = None, exclude: Collection[Path] = ()
) -> GitState:
    """`git status --porcelain` (of `subdir` only, when the release ships only that) and the
    remote-tracking branches that hold `commit`. Runs locally; never fetches."""
    spec = [subdir or "."]
    for path in exclude:  # the deployer's own run records, when they live in the repository
        try:
            spec.append(f":(exclude){path.resolve().relative_to(repo.resolve())}")
        except ValueError:
            continue
    try:
        status = _git(repo, "status", "--porcelain", "--", *spec)
        remotes = _git(repo, "remote")
        branches = _git(repo, "branch", "-r", "--format=%(refname:short)", "--contains", commit)
    except (OSError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", "") or str(exc)
        return GitState(str(repo), commit, error=str(err).strip().splitlines()[-1])
    return GitState(
        repo=str(repo),
        commit=commit,
        dirty=tuple(line for line in status.splitlines() if line.strip()),
        remote_branches=tuple(
            b for b in branches.split() if b and not b.endswith("/HEAD") and "/" in b
        ),
        has_remote=bool(remotes.strip()),
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def gather_fleet(runner: Runner, hosts: Sequence[HostPlan], health: Health) -> FleetFacts:
    """Ask every host for its facts, read-only (`prepare` without taking the lock), then probe
    the health of each one that runs a release."""

    def ask(hp: HostPlan) -> HostFacts:
        return parse_facts(runner.step(hp.host, scripts.prepare(hp.layout, lock_info=None)).output)

    answers = runner.each(hosts, ask)
    facts = {n: a for n, a in answers.items() if isinstance(a, HostFacts)}
    return FleetFacts(
        hosts=tuple(hp.name for hp in hosts),
        roots={hp.name: hp.layout.root for hp in hosts},
        facts=facts,
        problems={n: a for n, a in answers.items() if isinstance(a, DeployerError)},
        probes=probe_fleet(runner, hosts, health, facts),
    )


def probe_fleet(
    runner: Runner, hosts: Sequence[HostPlan], health: Health, facts: Mapping[str, HostFacts]
) -> dict[str, Probe]:
    """One health probe of each host's current release, in parallel; no retries: this is a
    look at the fleet, not a wait for it."""
    targets = [
        hp
        for hp in hosts
        if hp.name in facts and facts[hp.name].current and (hp.health_url or hp.health_command)
    ]
    results = runner.each(targets, lambda hp: probe_once(runner, health, hp, None))
    return {
        name: result if isinstance(result, Probe) else Probe(False, str(result))
        for name, result in results.items()
    }
