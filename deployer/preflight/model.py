"""The checklist's vocabulary: its items (name, what is checked, critical or not), the facts
they judge (this machine's, the fleet's) and the policy that decides what blocks. Data only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deployer.config.model import ResourceLimits
from deployer.errors import DeployerError
from deployer.events import CheckItem
from deployer.facts import HostFacts
from deployer.health import Probe

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
    """The whole checklist for a deploy: local facts and the policy (see strategies/rolling.py)."""

    local: LocalFacts
    policy: Policy = Policy()


def make_item(
    name: str, status: str, detail: str | Sequence[str] = "", remedy: str = ""
) -> CheckItem:
    """One checklist item; a remedy is shown only when there is something to do."""
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


def first_lines(text: str, n: int = 3) -> str:
    """An error's first lines, indented to sit under an item."""
    return "\n  ".join(line.rstrip() for line in text.strip().splitlines()[:n])


def unanswered(fleet: FleetFacts) -> list[str]:
    """The hosts that gave no facts."""
    return [h for h in fleet.hosts if h not in fleet.facts]
