"""The operations a user runs (deploy, preflight, rollback, drill, status, history,
releases, unlock, delivery stats), wired from a project directory: load and validate config,
build the release, plan, then hand the plan to its flow with a transport and reporters.
Tasks call these and nothing deeper; this package's `__all__` is what they may use.

project.py: the project on disk and `load`; building.py: the release (and `--resume`'s
rebuild); wiring.py: options, bus, webhook, runner, strategy plans; runs.py: deploy,
rollback, drill; checklist.py: `invoke preflight`; queries.py: the read-only operations."""

from deployer.api.building import build, release_time
from deployer.api.checklist import preflight
from deployer.api.project import (
    PLACEHOLDER_RELEASE,
    Loaded,
    Project,
    host_names,
    inventory_listing,
    is_production,
    load,
    load_inventory_only,
)
from deployer.api.queries import delivery_stats, history, status, unlock
from deployer.api.runs import deploy, drill, rollback
from deployer.api.wiring import Options

__all__ = [
    "PLACEHOLDER_RELEASE",
    "Loaded",
    "Options",
    "Project",
    "build",
    "delivery_stats",
    "deploy",
    "drill",
    "history",
    "host_names",
    "inventory_listing",
    "is_production",
    "load",
    "load_inventory_only",
    "preflight",
    "release_time",
    "rollback",
    "status",
    "unlock",
]
