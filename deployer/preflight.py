"""The pre-deployment checklist: hosts reachable, lock free, disk, variables and secrets,
source, migration command, fleet health, rollback target, notifications; each item pass,
fail, warn or skip, with what to do. The builder (`build_checklist`, `decide`) is pure: it
judges facts gathered elsewhere and never connects. Gathering (`gather_fleet`, `probe_fleet`,
`git_state`) only reads: it never takes the lock, uploads or changes a host."""

from __future__ import annotations

import posixpath
import shlex
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deployer.config.model import Health, Playbook, ResourceLimits
from deployer.errors import ConfigError, DeployerError, LockHeldError, PreflightError
from deployer.events import CheckItem, Checklist
from deployer.facts import HostFacts, parse_facts
from deployer.health import Probe
from deployer.history import Record, rollback_target
from deployer.plan import DeployPlan, HostPlan
from deployer.probe import probe_once
from deployer.prunable import find_unremovable
from deployer.release import Release
from deployer.remote import scripts
from deployer.resources import over_limits
from deployer.runner import Runner
from deployer.secrets import redact

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"

HOSTS, LOCK, DISK, CONFIG = "hosts", "lock", "disk", "config"
SOURCE, MIGRATION, HEALTH, ROLLBACK, NOTIFY = "source", "migration", "health", "rollback", "notify"
CLEANUP = "cleanup"
RESOURCES = "resources"
ALL_WARNINGS = "all-warnings"

# name -> (what is checked, critical), in the order shown. A critical failure stops a deploy
# and cannot be overridden. The others stop it unless overridden with `--override NAME`;
# `source` and `notify` report problems as warnings, which block only with --strict.
ITEMS: dict[str, tuple[str, bool]] = {
    HOSTS: ("every host reachable with a known host key", True),
    LOCK: ("deploy lock free", True),
    DISK: ("enough free disk for the release", True),
    CONFIG: ("every variable and secret present", True),
    SOURCE: ("source clean and pushed", False),
    MIGRATION: ("migration command present in the release", False),
    HEALTH: ("fleet healthy now", False),
    ROLLBACK: ("rollback target on every host", False),
    RESOURCES: ("hosts within their resource limits", False),
    CLEANUP: ("old releases removable by the deploy user", False),
    NOTIFY: ("notifications configured", False),
}
OVERRIDABLE = tuple(name for name, (_, critical) in ITEMS.items() if not critical)

BLOCK_KB = 4  # files take whole blocks (pages, on tmpfs) on the host
_SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".rb", ".js", ".pl", ".php", ".sql")
_NOT_IN_A_PATH = set("$`{}*?=:<>|;&()~'\"\\")


# ---------------------------------------------------------------- facts judged


@dataclass(frozen=True)
class GitState:
    """The git source as seen on this machine (remote-tracking branches as of the last fetch)."""

    repo: str
    commit: str
    dirty: tuple[str, ...] = ()  # `git status --porcelain` lines
    remote_branches: tuple[str, ...] = ()  # remote-tracking branches that hold the commit
    has_remote: bool = True
    error: str | None = None


@dataclass(frozen=True)
class LocalFacts:
    """What this machine knows before connecting."""

    env: str
    release_id: str
    needed_kb: int | None = None  # archive + unpacked tree while staging
    release_paths: frozenset[str] = frozenset()  # files and dirs a release has on a host
    migrate: tuple[str, str] | None = None  # (host, rendered migrate.command)
    config_errors: tuple[str, ...] = ()
    rendered_hosts: int = 0
    secrets: int = 0
    planned: bool = True  # False: the plan did not render, so commands and hosts are unknown
    source: GitState | str = ""  # a git ref's state, or the directory a release comes from
    notify_env: str | None = None  # notify.webhook.url_env
    notify_set: bool = False  # ... and it holds a URL
    notify_plain_http: bool = False  # ... an http:// one: token and messages unencrypted
    health_configured: bool = True
    cleanup_sudo: bool = False  # `cleanup: {sudo: true}`
    resource_limits: ResourceLimits = ResourceLimits()  # playbook resources.warn


@dataclass(frozen=True)
class FleetFacts:
    """What the hosts said: `prepare` facts (the lock step's, in a deploy), why the others did
    not answer, and one health probe per host running a release."""

    hosts: tuple[str, ...]
    roots: Mapping[str, str] = field(default_factory=dict)  # host -> deploy_to
    facts: Mapping[str, HostFacts] = field(default_factory=dict)
    problems: Mapping[str, DeployerError] = field(default_factory=dict)
    skipped: Mapping[str, DeployerError] = field(default_factory=dict)  # --skip-unreachable
    probes: Mapping[str, Probe] = field(default_factory=dict)
    probed: bool = True  # False: health was not probed (the run stopped before that)
    locking: bool = False  # the facts came with our lock (a deploy), not read-only


@dataclass(frozen=True)
class Policy:
    """What stops a deploy besides critical failures."""

    overrides: frozenset[str] = frozenset()
    strict: bool = False  # warnings of non-critical items block too
    strict_by: str = ""  # what made it strict, for the error: --strict, or where in the playbook
    lenient: bool = False  # --resume: finishing an approved deploy; only critical items block


@dataclass(frozen=True)
class Checks:
    """The whole checklist for a deploy: local facts and the policy (see `deployer.deploy`)."""

    local: LocalFacts
    policy: Policy = Policy()


# ---------------------------------------------------------------- the builder (pure)


def build_checklist(local: LocalFacts, fleet: FleetFacts | None) -> tuple[CheckItem, ...]:
    """Every item, in order. `fleet` None: the hosts could not be asked (the plan did not
    render), so the items that need them are skipped."""
    if fleet is None:
        why = "not checked: the configuration does not render (see config)"
        fleet_items = [_item(name, SKIP, why) for name in (HOSTS, LOCK, DISK)]
        late = [
            _item(HEALTH, SKIP, why),
            _item(ROLLBACK, SKIP, why),
            _item(RESOURCES, SKIP, why),
            _item(CLEANUP, SKIP, why),
        ]
    else:
        fleet_items = [
            check_hosts(local, fleet),
            check_lock(local, fleet),
            check_disk(local, fleet),
        ]
        late = [
            check_health(local, fleet),
            check_rollback(local, fleet),
            check_resources(local, fleet),
            check_cleanup(local, fleet),
        ]
    items = [
        *fleet_items,
        check_config(local),
        check_source(local),
        check_migration(local),
        *late,
        check_notify(local),
    ]
    # Details quote what hosts answered (a health body, an error's output): mask secrets.
    return tuple(replace(i, detail=redact(i.detail), remedy=redact(i.remedy)) for i in items)


def _item(name: str, status: str, detail: str | Sequence[str] = "", remedy: str = "") -> CheckItem:
    title, critical = ITEMS[name]
    text = detail if isinstance(detail, str) else "\n".join(detail)
    return CheckItem(
        name=name,
        title=title,
        status=status,
        critical=critical,
        detail=text,
        remedy=remedy if status in (FAIL, WARN) else "",
    )


def _first_lines(text: str, n: int = 3) -> str:
    return "\n  ".join(line.rstrip() for line in text.strip().splitlines()[:n])


def _unanswered(fleet: FleetFacts) -> list[str]:
    return [h for h in fleet.hosts if h not in fleet.facts]


def check_hosts(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    bad = {n: e for n, e in fleet.problems.items() if not isinstance(e, LockHeldError)}
    asked = {*fleet.facts, *fleet.problems, *fleet.skipped}
    unasked = [h for h in fleet.hosts if h not in asked]
    if bad:
        lines = [_first_lines(e.message) for e in bad.values()]
        if unasked:
            lines.append(f"not contacted (the first host failed first): {' '.join(unasked)}")
        hints = dict.fromkeys(e.hint for e in bad.values() if e.hint)
        remedy = "; ".join(hints) or (
            "bring the host(s) back, or leave them out with --limit '!NAME' (or --skip-unreachable)"
        )
        return _item(HOSTS, FAIL, lines, remedy)
    if fleet.skipped:
        lines = [
            f"{n}: left out (--skip-unreachable): {e.message.splitlines()[0]}"
            for n, e in fleet.skipped.items()
        ]
        remedy = f"once it is back: invoke deploy --env {local.env} --resume"
        return _item(HOSTS, WARN, lines, remedy)
    if unasked:
        return _item(HOSTS, SKIP, f"not contacted: {' '.join(unasked)} (the lock stopped the run)")
    return _item(HOSTS, PASS, f"{len(fleet.facts)} host(s): {' '.join(fleet.facts)}")


def check_lock(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    held = [e.message for e in fleet.problems.values() if isinstance(e, LockHeldError)]
    held += [
        f"{name}: deploy lock is {facts.lock_holder.describe()}"
        for name, facts in fleet.facts.items()
        if facts.lock_holder is not None and not facts.lock_acquired
    ]
    if held:
        remedy = (
            "wait for that run to finish; if it is dead, clear it with"
            f" `invoke unlock --env {local.env}`"
        )
        return _item(LOCK, FAIL, held, remedy)
    if not fleet.facts:
        return _item(LOCK, SKIP, "not checked: no host answered")
    state = "taken for this run" if fleet.locking else "free"
    return _item(LOCK, PASS, f"{state} on {len(fleet.facts)} host(s)")


def check_disk(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    if local.needed_kb is None or not fleet.facts:
        return _item(DISK, SKIP, "not checked: no host answered")
    low, unknown, room = [], [], []
    for name, facts in fleet.facts.items():
        root = fleet.roots.get(name, "deploy_to")
        if local.release_id in facts.releases:
            continue  # already staged (a resumed run): nothing to send
        if facts.free_kb is None:
            unknown.append(name)
        elif facts.free_kb < local.needed_kb:
            low.append(
                f"{name}: only {facts.free_kb} KiB free under {root}; the release needs about"
                f" {local.needed_kb} KiB (archive + unpacked)"
            )
        else:
            room.append((facts.free_kb, name))
    lines = [*low, *(f"not checked: {n} did not answer" for n in _unanswered(fleet))]
    if low:
        remedy = (
            "free space under deploy_to on those hosts (a lower keep_releases, old logs), or"
            f" grow the filesystem; then check again with `invoke preflight --env {local.env}`"
        )
        return _item(DISK, FAIL, lines, remedy)
    if unknown:
        lines.append(f"free space unknown (df failed) on {' '.join(unknown)}")
        return _item(DISK, WARN, lines, "check `df -Pk` under deploy_to on those hosts")
    if room:
        least, name = min(room)
        lines.insert(0, f"needs about {local.needed_kb} KiB; least free: {name} with {least} KiB")
    else:
        lines.insert(0, f"{local.release_id} is already on every host")
    return _item(DISK, PASS, lines)


def check_config(local: LocalFacts) -> CheckItem:
    if local.config_errors:
        remedy = (
            "define each variable (playbook vars: or the inventory) and make each secret"
            " resolvable (export its variable, fix its command): each error's hint says how"
        )
        return _item(CONFIG, FAIL, local.config_errors, remedy)
    return _item(
        CONFIG,
        PASS,
        f"rendered for {local.rendered_hosts} host(s); {local.secrets} secret(s) resolved",
    )


def check_source(local: LocalFacts) -> CheckItem:
    git = local.source
    if not isinstance(git, GitState):
        return _item(SOURCE, SKIP, f"a directory ({git or 'source.path'}), not a git ref")
    short = git.commit[:7]
    if git.error:
        return _item(SOURCE, WARN, f"git: {git.error}", "check the repository with git status")
    lines = []
    if git.dirty:
        lines.append(
            f"{len(git.dirty)} uncommitted change(s) in {git.repo}; the release is commit"
            f" {short}, not your working tree:"
        )
        lines += [f"  {line}" for line in git.dirty[:5]]
        if len(git.dirty) > 5:
            lines.append(f"  ... and {len(git.dirty) - 5} more")
    if not git.has_remote:
        lines.append(f"{git.repo} has no remote: commit {short} exists only on this machine")
    elif not git.remote_branches:
        lines.append(f"commit {short} is on no remote-tracking branch (not pushed)")
    if lines:
        remedy = "commit and push (git push), or deploy a ref that is pushed"
        return _item(SOURCE, WARN, lines, remedy)
    on = ", ".join(git.remote_branches[:3])
    return _item(SOURCE, PASS, f"commit {short}: working tree clean, pushed ({on})")


def check_migration(local: LocalFacts) -> CheckItem:
    if local.migrate is None:
        why = "no migrate.command" if local.planned else "not checked: the plan did not render"
        return _item(MIGRATION, SKIP, why)
    host, command = local.migrate
    paths = path_words(command)
    if not paths:
        return _item(MIGRATION, SKIP, f"no word of `{command}` names a file of the release")
    missing = [p for p in paths if p not in local.release_paths]
    if missing:
        detail = f"{host}: `{command}`: {', '.join(missing)} not in release {local.release_id}"
        remedy = (
            "add it to the source (committed and pushed, for a git ref) or fix migrate.command;"
            " if the command finds it elsewhere, deploy with --override migration"
        )
        return _item(MIGRATION, FAIL, detail, remedy)
    return _item(MIGRATION, PASS, f"{', '.join(paths)} in the release (runs on {host})")


def path_words(command: str) -> list[str]:
    """The words of a shell command that look like files of the release (`./x`, `x.py`,
    `bin/x`), relative to the release root (the command runs there; a plain `cd DIR` is
    followed). A heuristic: absolute paths and words with shell syntax are left alone."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: the remote shell will say so
        words = command.split()
    found: list[str] = []
    cwd: str | None = ""
    previous = ""
    for word in words:
        if previous == "cd":
            absolute = word.startswith("/") or bool(set(word) & _NOT_IN_A_PATH)
            cwd = None if absolute or cwd is None else posixpath.join(cwd, word)
        previous = word
        if cwd is None or word.startswith(("/", "-")) or set(word) & _NOT_IN_A_PATH:
            continue
        if not (word.startswith("./") or "/" in word or word.endswith(_SCRIPT_SUFFIXES)):
            continue
        path = posixpath.normpath(posixpath.join(cwd, word))
        if path in (".", "..") or path.startswith("../"):
            continue
        if path not in found:
            found.append(path)
    return found


def check_health(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    if not local.health_configured:
        return _item(HEALTH, SKIP, "no health check configured")
    running = {n: f.current for n, f in fleet.facts.items() if f.current}
    if not running:
        return _item(HEALTH, SKIP, "no host runs a release yet (first deploy)")
    if not fleet.probed:
        return _item(HEALTH, SKIP, "not checked: the run stopped first")
    bad = [
        f"{name} (on {running[name]}): {probe.detail.strip()[:200]}"
        for name, probe in fleet.probes.items()
        if name in running and not probe.ok
    ]
    idle = [n for n in fleet.facts if n not in running]
    notes = [*(f"not checked: {n} did not answer" for n in _unanswered(fleet))]
    if idle:
        notes.append(f"no release yet on {' '.join(idle)}")
    if bad:
        remedy = (
            f"look at those hosts (`invoke status --env {local.env}`); if this deploy is the"
            " fix, deploy with --override health"
        )
        return _item(HEALTH, FAIL, [*bad, *notes], remedy)
    return _item(HEALTH, PASS, [f"{len(running)} host(s) healthy on their release", *notes])


def check_rollback(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    """Per host: the release a failed deploy returns it to (what `current` points at now), and
    the one `invoke rollback` would pick after this deploy, must both be on the host."""
    bad: list[str] = []
    ok: dict[str, list[str]] = {}  # target -> hosts
    deployed = Record(
        time="", user="", release=local.release_id, action="deploy", result="success", run_id=""
    )
    for name, facts in fleet.facts.items():
        current = facts.current
        if current == local.release_id:  # resuming: as `deployer.deploy` decides
            current = rollback_target(facts.history, current)
        if current is None:
            continue  # first deploy on this host: nothing to return to
        later = rollback_target([*facts.history, deployed], local.release_id)
        if current not in facts.releases:
            bad.append(
                f"{name}: a failed deploy would return it to {current}, but"
                f" releases/{current} is missing"
            )
        elif later is not None and later not in facts.releases:
            bad.append(
                f"{name}: `invoke rollback` after this deploy would return it to {later},"
                f" but releases/{later} is missing"
            )
        else:
            ok.setdefault(current, []).append(name)
    if bad:
        remedy = (
            f"see `invoke releases --env {local.env}`; to deploy anyway (a failed batch then"
            " stays on the new release on those hosts), deploy with --override rollback"
        )
        return _item(ROLLBACK, FAIL, bad, remedy)
    if not ok:
        return _item(ROLLBACK, SKIP, "first deploy: no release to return to yet")
    targets = [f"{' '.join(names)} to {target}" for target, names in ok.items()]
    return _item(ROLLBACK, PASS, f"a failed deploy returns {', '.join(targets)}")


def check_resources(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    """A warning, never a failure: a busy or nearly full host can still take a release, but
    the operator should know before it does (see `deployer.resources`)."""
    reported = {n: f.resources for n, f in fleet.facts.items() if f.resources is not None}
    if not reported:
        return _item(RESOURCES, SKIP, "not checked: no host reported its resources")
    over = [
        f"{name}: {'; '.join(reasons)}"
        for name, r in reported.items()
        if (reasons := over_limits(r, local.resource_limits))
    ]
    if over:
        remedy = (
            "free disk or inodes under deploy_to (a lower keep_releases, old logs), or look at"
            f" what loads the host: `invoke status --env {local.env}` shows each host's use;"
            " the limits are the playbook's resources.warn"
        )
        return _item(RESOURCES, WARN, over, remedy)
    return _item(RESOURCES, PASS, f"{len(reported)} host(s) within resources.warn limits")


def check_cleanup(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    """Releases (not live) holding a directory the deploy user cannot empty, typically files
    an app running as root wrote: pruning them would fail (a warning after the deploy)."""
    if not fleet.facts:
        return _item(CLEANUP, SKIP, "not checked: no host answered")
    found = [
        f"{name}: {fleet.roots.get(name, 'deploy_to')}/releases/{u.release}/{u.path}"
        f" is owned by {u.owner}"
        for name, facts in sorted(fleet.facts.items())
        for u in facts.unremovable
    ]
    if not found:
        return _item(CLEANUP, PASS, "every release but the live one can be pruned")
    if local.cleanup_sudo:
        return _item(CLEANUP, PASS, [*found, "pruned with `sudo -n rm` (cleanup: {sudo: true})"])
    remedy = (
        "pruning these will fail (a warning; the deploy still succeeds): `sudo chown -R`"
        " them to the deploy user, or set `cleanup: {sudo: true}` in the playbook when it"
        " has passwordless sudo"
    )
    return _item(CLEANUP, WARN, found, remedy)


def check_notify(local: LocalFacts) -> CheckItem:
    if local.notify_env is None:
        remedy = (
            "add notify: {webhook: {url_env: DEPLOY_WEBHOOK_URL}} to the playbook and export"
            " that variable (in CI, from its secret store)"
        )
        return _item(
            NOTIFY, WARN, "notify.webhook is not set: nobody else hears of deploys", remedy
        )
    if not local.notify_set:
        detail = f"notify.webhook.url_env names {local.notify_env}, which is not set"
        return _item(NOTIFY, FAIL, detail, f"export {local.notify_env}=<webhook URL>")
    if local.notify_plain_http:
        detail = (
            f"${local.notify_env} is a plain http:// URL: its token and every message cross"
            " the network unencrypted"
        )
        return _item(NOTIFY, WARN, detail, "use the https:// URL the chat service gives")
    return _item(NOTIFY, PASS, f"webhook from ${local.notify_env}")


# ---------------------------------------------------------------- what stops a deploy


def decide(items: Sequence[CheckItem], policy: Policy = Policy()) -> Checklist:
    """The checklist with what blocks: every critical failure; a non-critical failure (or,
    when strict, warning) unless overridden; with `lenient` (resuming), critical ones only."""
    blocking: list[str] = []
    overridden: list[str] = []
    for item in items:
        if item.critical:
            if item.status == FAIL:
                blocking.append(item.name)
            continue
        if item.status != FAIL and not (item.status == WARN and policy.strict):
            continue
        if item.name in policy.overrides or ALL_WARNINGS in policy.overrides:
            overridden.append(item.name)
        elif not policy.lenient:
            blocking.append(item.name)
    return Checklist(
        items=tuple(items),
        blocking=tuple(blocking),
        overridden=tuple(overridden),
        strict=policy.strict,
    )


def parse_overrides(value: str | None) -> frozenset[str]:
    """`--override health,rollback` or `--override all-warnings`, checked before anything."""
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    for name in sorted(names):
        if name == ALL_WARNINGS:
            continue
        if name not in ITEMS:
            raise ConfigError(
                f"--override: unknown check {name!r}",
                hint=f"checks that can be overridden: {', '.join(OVERRIDABLE)}, or {ALL_WARNINGS}",
            )
        if ITEMS[name][1]:
            raise ConfigError(
                f"--override: {name!r} is a critical check and cannot be overridden",
                hint="fix it: `invoke preflight --env ENV` says what to do",
            )
    return names


def preflight_error(checklist: Checklist, env: str, strict_by: str = "") -> PreflightError:
    """One error naming every blocking item, its hosts and what to do; `strict_by` says what
    made warnings block (`--strict`, or the playbook's preflight.strict)."""
    blocking = [i for i in checklist.items if i.name in checklist.blocking]
    lines = [
        f"preflight: {len(blocking)} check(s) failed; nothing was changed and no lock is kept:"
    ]
    for item in blocking:
        kind = "critical" if item.critical else ("warning, strict" if item.status == WARN else "")
        lines.append(f"  {item.name}{f' ({kind})' if kind else ''}: {item.title}")
        lines += [f"    {line}" for line in item.detail.splitlines()]
        if item.remedy:
            lines.append(f"    what to do: {item.remedy}")
    if strict_by and any(i.status == WARN for i in blocking):
        lines.append(f"  warnings block because of {strict_by}")
    soft = [i.name for i in blocking if not i.critical]
    if soft:
        hint = f"to deploy anyway: --override {','.join(soft)}"
        if len(soft) < len(blocking):
            hint += " (critical checks cannot be overridden: fix those first)"
    else:
        hint = f"fix it, then check with `invoke preflight --env {env}`"
    return PreflightError("\n".join(lines), hint=hint)


# ---------------------------------------------------------------- gathering (reads only)


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


def gather_fleet(
    runner: Runner, hosts: Sequence[HostPlan], health: Health, *, release: str, keep: int
) -> FleetFacts:
    """Ask every host for its facts, read-only (`prepare` without taking the lock), and what
    deploying `release` would prune (`prunable`), then probe the health of each one that runs
    a release."""

    def ask(hp: HostPlan) -> HostFacts:
        return parse_facts(runner.step(hp.host, scripts.prepare(hp.layout, lock_info=None)).output)

    answers = runner.each(hosts, ask)
    facts = {n: a for n, a in answers.items() if isinstance(a, HostFacts)}
    find_unremovable(
        runner, [h for h in hosts if h.name in facts], facts, release=release, keep=keep
    )
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
