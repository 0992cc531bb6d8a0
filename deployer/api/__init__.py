"""The operations a user runs (deploy, preflight, rollback, drill, status, history,
releases, unlock, delivery stats), wired from a project directory: load and validate config,
build the release, plan, then hand the plan to its flow with a transport and reporters.
Tasks call these and nothing deeper; this package's `__all__` is what they may use.

project.py: the project on disk and `load`; building.py: the release (and `--resume`'s
rebuild); wiring.py: options, bus, webhook, runner, strategy plans; runs.py: deploy,
rollback, drill; checklist.py: `invoke preflight`; queries.py: the read-only operations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer.lazy import exports

if TYPE_CHECKING:
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
else:
    # Each name is imported from its module on first use: `invoke --list` loads none of them, and
    # an operation loads its own module, not the others' (a deploy, not the read-only queries).
    __getattr__, __dir__ = exports(
        globals(),
        {
            "PLACEHOLDER_RELEASE": "deployer.api.project",
            "Loaded": "deployer.api.project",
            "Options": "deployer.api.wiring",
            "Project": "deployer.api.project",
            "build": "deployer.api.building",
            "delivery_stats": "deployer.api.queries",
            "deploy": "deployer.api.runs",
            "drill": "deployer.api.runs",
            "history": "deployer.api.queries",
            "host_names": "deployer.api.project",
            "inventory_listing": "deployer.api.project",
            "is_production": "deployer.api.project",
            "load": "deployer.api.project",
            "load_inventory_only": "deployer.api.project",
            "preflight": "deployer.api.checklist",
            "release_time": "deployer.api.building",
            "rollback": "deployer.api.runs",
            "status": "deployer.api.queries",
            "unlock": "deployer.api.queries",
        },
    )


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
