"""Load balancer planning shared by blue-green's traffic switch and rolling/canary drain,
pure: which inventory hosts a `load_balancer.hosts` names, a load balancer's template
variables and config path, and what its template sees of each app host. Connects to
nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from deployer.config.model import (
    Health,
    HttpCheck,
    Inventory,
    LoadBalancer,
    Location,
    Playbook,
    Template,
)
from deployer.config.render import host_variables, render
from deployer.errors import ConfigError
from deployer.plan import DeployPlan, HostPlan


def lb_hosts(inventory: Inventory, name: str) -> tuple[str, ...]:
    if any(h.name == name for h in inventory.hosts):
        return (name,)
    return tuple(inventory.groups.get(name, ()))


def _base(plan: DeployPlan) -> dict[str, Any]:
    # As deployer.plan renders every host: the same per-run values.
    return {"release_id": plan.release_id, "env": plan.env, "deploy_env": plan.env}


def lb_variables_and_dest(
    plan: DeployPlan, lb: LoadBalancer, hp: HostPlan, inventory: Inventory
) -> tuple[dict[str, Any], str]:
    """A load balancer host's template variables and its rendered, checked config path: the
    same for blue-green's traffic switch and rolling/canary drain."""
    assert lb.dest is not None and lb.reload is not None  # required by the loader
    variables = {
        **host_variables(hp.host, plan.playbook, _base(plan), inventory=inventory),
        "deploy_to": hp.layout.root,
    }
    dest = render(lb.dest, variables).strip()
    if not dest.startswith("/") or ".." in dest.split("/") or dest.endswith("/"):
        raise ConfigError(
            f"must be an absolute file path without '..', got {dest!r} for host {hp.name}",
            file=lb.dest.where.file,
            line=lb.dest.where.line,
            key_path=lb.dest.where.key_path,
        )
    return variables, dest


def lb_verify(
    lb: LoadBalancer,
    hp: HostPlan,
    health: Health,
    variables: Mapping[str, Any],
    *,
    expect_version: bool,
) -> tuple[HostPlan, Health] | None:
    """Asking the load balancer itself after a reload (None without `verify_url`): its
    HostPlan with health_url set to the rendered verify_url, and `health` for that URL."""
    if lb.verify_url is None:
        return None
    check = HttpCheck(url=lb.verify_url, via="ssh", expect_version=expect_version)
    url = render(lb.verify_url, variables).strip()
    return replace(hp, health_url=url, health_command=None), replace(health, http=check)


def lb_commands(lb: LoadBalancer, variables: Mapping[str, Any]) -> tuple[str | None, str]:
    """The load balancer's validate (when set) and reload commands, rendered for its host."""
    assert lb.reload is not None  # required by the loader
    validate = render(lb.validate, variables).strip() if lb.validate else None
    return validate, render(lb.reload, variables).strip()


def upstream_host(
    hp: HostPlan, playbook: Playbook, plan: DeployPlan, inventory: Inventory, template: str
) -> dict[str, Any]:
    """What the load balancer template sees of one app host: name, address, and its
    variables (a variable that is itself a template renders for that host when used)."""
    variables = host_variables(hp.host, playbook, _base(plan), inventory=inventory)
    return {
        "name": hp.name,
        "address": hp.host.address,
        "vars": _HostVars(variables, f"templates/{template}", hp.name),
    }


class _HostVars:
    """`h.vars.NAME` in a load balancer template. Not a Mapping on purpose: the renderer
    would then expand every variable of the host eagerly; here only the ones used render."""

    def __init__(self, variables: Mapping[str, Any], file: str, host: str) -> None:
        self._variables = variables
        self._file = file
        self._host = host

    def __getitem__(self, key: str) -> Any:
        value = self._variables[key]
        if isinstance(value, str) and "{" in value:
            where = Location(self._file, None, f"hosts[{self._host}].vars.{key}")
            return render(Template(value, where), self._variables)
        return value

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):  # Jinja probes dunders such as __html__; ours are private
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __contains__(self, key: str) -> bool:
        return key in self._variables
