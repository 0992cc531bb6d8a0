"""A deploy project on disk and what loading it gives: `Project` (inventories/, playbooks/,
templates/), `load` (inventory + playbook validated, hosts selected; nothing connects) and the
`Loaded` result that renders plans. Reads files only."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.config import (
    Host,
    Inventory,
    Playbook,
    load_inventory,
    load_playbook,
    select_hosts,
    validate_templates_exist,
)
from deployer.config.ansible.listing import host_listing
from deployer.config.ansible.listing import inventory_listing as list_inventory
from deployer.errors import ConfigError
from deployer.plan import DeployPlan, build_plan
from deployer.secrets import Secret, mask

PLACEHOLDER_RELEASE = "00000000T000000Z-0000000"


@dataclass(frozen=True)
class Project:
    """A deploy project: `inventories/`, `playbooks/`, `templates/` under one root."""

    root: Path

    @property
    def inventories(self) -> Path:
        return self.root / "inventories"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def runs(self) -> Path:
        return self.root / ".deploy-runs"

    def playbook_path(self, name: str) -> Path:
        path = self.root / "playbooks" / f"{name}.yml"
        if not path.exists():
            raise ConfigError(
                f"playbook '{name}' not found",
                file=str(path),
                hint="create playbooks/deploy.yml or pass --playbook NAME",
            )
        return path


@dataclass(frozen=True)
class Loaded:
    project: Project
    env: str
    inventory: Inventory
    playbook: Playbook
    hosts: tuple[Host, ...]

    def plan(
        self,
        release_id: str,
        run_id: str,
        *,
        render_files: bool = True,
        secrets: Mapping[str, Secret] | None = None,
    ) -> DeployPlan:
        """The plan for one release. Without `render_files` (nothing is uploaded: status,
        unlock, rollback) templates are not rendered and secrets not resolved. `secrets`:
        already resolved (default: resolved here)."""
        return build_plan(
            self.playbook,
            self.hosts,
            env=self.env,
            release_id=release_id,
            run_id=run_id,
            templates_dir=self.project.templates,
            inventory=self.inventory,
            project_root=self.project.root,
            render_files=render_files,
            secrets=secrets,
        )


def load(
    project: Project, env: str, *, limit: str | None = None, playbook: str = "deploy"
) -> Loaded:
    """Load and validate everything; fails before any connection."""
    inventory = load_inventory(project.inventories, env)
    book = load_playbook(project.playbook_path(playbook))
    validate_templates_exist(book, project.templates)
    if book.notify.webhook_url_env and (url := os.environ.get(book.notify.webhook_url_env)):
        mask(url)  # masked before any hook runs: local hooks inherit the environment
    hosts = select_hosts(inventory, limit)
    return Loaded(project, env, inventory, book, hosts)


def load_inventory_only(project: Project, env: str) -> Inventory:
    return load_inventory(project.inventories, env)


def inventory_listing(project: Project, env: str, *, host: str | None = None) -> dict[str, Any]:
    """What the inventory holds, in `ansible-inventory --list` shape (`--host`: one host's
    variables), secret-named values masked. Reads files only; connects to nothing."""
    inventory = load_inventory(project.inventories, env)
    return host_listing(inventory, host) if host is not None else list_inventory(inventory)


def is_production(loaded: Loaded) -> bool:
    """An environment the inventory or playbook marks `production: true` (a variable, in the
    inventory's vars or the playbook's), or one named production or prod."""
    marked = loaded.playbook.vars.get("production") is True or any(
        h.vars.get("production") is True for h in loaded.hosts
    )
    return marked or loaded.env in ("production", "prod")


def host_names(hosts: Iterable[Host]) -> list[str]:
    return [h.name for h in hosts]
