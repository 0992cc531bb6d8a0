"""The pre-deployment checklist: hosts reachable, lock free, disk, variables and secrets,
source, migration command, fleet health, rollback target, notifications; each item pass,
fail, warn or skip, with what to do. The builder (`build_checklist`, `decide`) is pure: it
judges facts gathered elsewhere and never connects. Gathering (`gather_fleet`, `probe_fleet`,
`git_state`) only reads: it never takes the lock, uploads or changes a host.

model.py: items, facts, policy; fleet.py and local.py: the items judged from the hosts'
answers and from this machine; checklist.py: every item in order and what blocks;
gather.py: the facts, read-only."""

from deployer.preflight.checklist import build_checklist, decide, parse_overrides, preflight_error
from deployer.preflight.gather import (
    gather_fleet,
    git_state,
    local_facts,
    needed_kb,
    probe_fleet,
    release_paths,
)
from deployer.preflight.local import path_words
from deployer.preflight.model import (
    ALL_WARNINGS,
    CLEANUP,
    CONFIG,
    DISK,
    FAIL,
    HEALTH,
    HOSTS,
    ITEMS,
    LOCK,
    MIGRATION,
    NOTIFY,
    OVERRIDABLE,
    PASS,
    RESOURCES,
    ROLLBACK,
    SKIP,
    SOURCE,
    WARN,
    Checks,
    FleetFacts,
    GitState,
    LocalFacts,
    Policy,
)

__all__ = [
    "ALL_WARNINGS",
    "CLEANUP",
    "CONFIG",
    "DISK",
    "FAIL",
    "HEALTH",
    "HOSTS",
    "ITEMS",
    "LOCK",
    "MIGRATION",
    "NOTIFY",
    "OVERRIDABLE",
    "PASS",
    "RESOURCES",
    "ROLLBACK",
    "SKIP",
    "SOURCE",
    "WARN",
    "Checks",
    "FleetFacts",
    "GitState",
    "LocalFacts",
    "Policy",
    "build_checklist",
    "decide",
    "gather_fleet",
    "git_state",
    "local_facts",
    "needed_kb",
    "parse_overrides",
    "path_words",
    "preflight_error",
    "probe_fleet",
    "release_paths",
]
