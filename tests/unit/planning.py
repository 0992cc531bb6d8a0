"""A deploy plan from inventory and playbook text, for unit tests that run a flow against a
recording transport or plan a strategy; the load balancer section and template the
blue-green and drain tests share."""

from __future__ import annotations

from pathlib import Path

from deployer.config import parse_inventory_yaml, parse_playbook
from deployer.config.model import Inventory
from deployer.plan import DeployPlan, build_plan

RELEASE = "20260101T000000Z-abcdef0"

# A playbook's strategy.<kind>.load_balancer: nginx on the inventory's group lb.
LOAD_BALANCER = """\
    load_balancer:
      hosts: lb
      template: lb/TEMPLATE
      dest: "/etc/nginx/conf.d/{{ application }}.conf"
      validate: nginx -t -q
      reload: nginx -s reload
      verify_url: "http://{{ ansible_host }}:8080/health"
"""


def plan_for(
    inventory: str,
    playbook: str,
    templates: Path,
    release_id: str,
    run_id: str = "run1",
    *,
    limit: set[str] | None = None,
) -> tuple[DeployPlan, Inventory]:
    """The plan of the inventory's hosts (those in `limit`, when given)."""
    parsed = parse_inventory_yaml(inventory, "inv.yml", "test")
    plan = build_plan(
        parse_playbook(playbook, "deploy.yml"),
        [h for h in parsed.hosts if limit is None or h.name in limit],
        env="test",
        release_id=release_id,
        run_id=run_id,
        templates_dir=templates,
        inventory=parsed,
    )
    return plan, parsed


def load_balancer(template: str) -> str:
    """LOAD_BALANCER naming templates/lb/`template`."""
    return LOAD_BALANCER.replace("TEMPLATE", template)


def write_lb_template(templates: Path, name: str, text: str) -> None:
    (templates / "lb").mkdir(exist_ok=True)
    (templates / "lb" / name).write_text(text)
