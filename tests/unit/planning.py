"""A deploy plan from inventory and playbook text, for unit tests that run a flow against a
recording transport."""

from __future__ import annotations

from pathlib import Path

from deployer.config import parse_inventory_yaml, parse_playbook
from deployer.config.model import Inventory
from deployer.plan import DeployPlan, build_plan


def plan_for(
    inventory: str, playbook: str, templates: Path, release_id: str, run_id: str = "run1"
) -> tuple[DeployPlan, Inventory]:
    parsed = parse_inventory_yaml(inventory, "inv.yml", "test")
    plan = build_plan(
        parse_playbook(playbook, "deploy.yml"),
        parsed.hosts,
        env="test",
        release_id=release_id,
        run_id=run_id,
        templates_dir=templates,
        inventory=parsed,
    )
    return plan, parsed
