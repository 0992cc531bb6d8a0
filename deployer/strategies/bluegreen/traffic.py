"""Blue-green planning, pure: which selected hosts are which color, which hosts are load
balancers, the upstream config each load balancer gets for each color, which color is live
by the recorded history, and the deploy plan of the idle color. Connects to nothing, so
template errors surface before any host is touched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deployer.config.model import (
    BlueGreen,
    Health,
    Inventory,
    Location,
)
from deployer.config.render import render_file
from deployer.errors import ConfigError, PreflightError
from deployer.history import Record, recorded_live_color
from deployer.plan import DeployPlan, HostPlan
from deployer.remote import lb as lb_scripts
from deployer.remote.shell import Script
from deployer.strategies.balancers import (
    lb_commands,
    lb_hosts,
    lb_variables_and_dest,
    lb_verify,
    upstream_host,
)

TRAFFIC = "traffic"  # the history action of a traffic switch


@dataclass(frozen=True)
class LbPlan:
    """One load balancer host, its commands rendered, and the config for each color."""

    hp: HostPlan
    dest: str
    validate: str | None
    reload: str
    configs: Mapping[str, bytes] = field(repr=False)  # color -> rendered upstream config
    # Asking the load balancer itself after a reload: its HostPlan with health_url set to
    # load_balancer.verify_url, and the playbook's health settings for that URL.
    verify: tuple[HostPlan, Health] | None = None

    @property
    def name(self) -> str:
        return self.hp.name

    def switch_script(self, run_id: str, color: str, release: str | None, record: str) -> Script:
        """The one session that points this load balancer at `color` and records it."""
        return lb_scripts.switch_traffic(
            self.hp.layout,
            run_id,
            dest=self.dest,
            config=self.configs[color],
            validate=self.validate,
            reload=self.reload,
            color=color,
            release=release,
            history=[record],
        )


@dataclass(frozen=True)
class TrafficPlan:
    colors: tuple[str, str]
    members: Mapping[str, tuple[str, ...]]  # color -> host names, inventory order
    lbs: tuple[LbPlan, ...]

    def color_of(self, host: str) -> str | None:
        for color, names in self.members.items():
            if host in names:
                return color
        return None

    def other(self, color: str) -> str:
        return self.colors[1] if color == self.colors[0] else self.colors[0]

    @property
    def lb_names(self) -> tuple[str, ...]:
        return tuple(lb.name for lb in self.lbs)


def plan_traffic(plan: DeployPlan, inventory: Inventory, templates_dir: Path) -> TrafficPlan:
    """Split the selected hosts into the two colors and the load balancer(s), and render
    every load balancer's config for both colors. A --limit must keep whole colors and the
    load balancer: a color half deployed, or traffic switched without it, is never wanted."""
    playbook = plan.playbook
    bg = playbook.strategy.blue_green
    assert bg is not None, "plan_traffic needs strategy.blue_green"
    lb = bg.load_balancer
    where = lb.where or Location(playbook.path, None, "")
    selected = [hp.name for hp in plan.hosts]

    def error(key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message,
            file=where.file,
            line=where.line,
            key_path=f"strategy.blue_green.{key}",
            hint=hint,
        )

    members: dict[str, tuple[str, ...]] = {}
    for color in bg.colors:
        if color not in inventory.groups or not inventory.groups[color]:
            raise error(
                "colors",
                f"no inventory group {color!r} (or it has no hosts) in {inventory.path}",
                hint=f"add a group {color} with that color's app hosts, or set colors:",
            )
        names = inventory.groups[color]
        missing = [n for n in names if n not in selected]
        if missing:
            raise error(
                "colors",
                f"--limit leaves out {', '.join(missing)} of color {color}: blue-green deploys"
                " and switches whole colors",
                hint="drop --limit, or limit to whole colors and the load balancer",
            )
        members[color] = tuple(names)
    both = set(members[bg.colors[0]]) & set(members[bg.colors[1]])
    if both:
        raise error("colors", f"host(s) in both colors: {', '.join(sorted(both))}")
    lb_names = lb_hosts(inventory, lb.hosts)
    if not lb_names:
        raise error(
            "load_balancer.hosts",
            f"{lb.hosts!r} is no host or group of {inventory.path}",
            hint="name the load balancer host (or its group) of the inventory",
        )
    colored = set(members[bg.colors[0]]) | set(members[bg.colors[1]])
    if clash := [n for n in lb_names if n in colored]:
        raise error(
            "load_balancer.hosts",
            f"{', '.join(clash)} is both a load balancer and an app host of a color",
        )
    if missing := [n for n in lb_names if n not in selected]:
        raise error(
            "load_balancer.hosts",
            f"--limit leaves out the load balancer {', '.join(missing)}",
            hint="drop --limit, or include the load balancer",
        )
    if stray := [n for n in selected if n not in colored and n not in lb_names]:
        raise error(
            "colors",
            f"{', '.join(stray)} is in neither {bg.colors[0]}, {bg.colors[1]} nor the load"
            f" balancer ({lb.hosts})",
            hint="put it in a color group, or leave it out with --limit '!name'",
        )
    lbs = tuple(
        _plan_lb(plan, bg, plan.host(name), members, inventory, templates_dir) for name in lb_names
    )
    return TrafficPlan(colors=bg.colors, members=members, lbs=lbs)


def _plan_lb(
    plan: DeployPlan,
    bg: BlueGreen,
    hp: HostPlan,
    members: Mapping[str, tuple[str, ...]],
    inventory: Inventory,
    templates_dir: Path,
) -> LbPlan:
    playbook = plan.playbook
    lb = bg.load_balancer
    variables, dest = lb_variables_and_dest(plan, lb, hp, inventory)
    configs = {
        color: render_file(
            templates_dir / lb.template,
            {
                **variables,
                "color": color,
                "hosts": [
                    upstream_host(plan.host(n), playbook, plan, inventory, lb.template)
                    for n in members[color]
                ],
            },
        ).encode()
        for color in bg.colors
    }
    health = playbook.health
    expect = bool(health.http and health.http.expect_version)
    verify = lb_verify(lb, hp, health, variables, expect_version=expect)
    validate, reload = lb_commands(lb, variables)
    return LbPlan(
        hp=hp, dest=dest, validate=validate, reload=reload, configs=configs, verify=verify
    )


def live_color(traffic: TrafficPlan, histories: Mapping[str, Sequence[Record]]) -> str | None:
    """The live color as the load balancer hosts recorded it (None: traffic was never
    switched). Load balancers that disagree stop the run: which one is right is the
    operator's call."""
    seen = {name: recorded_live_color(histories[name]) for name in traffic.lb_names}
    colors = {c for c in seen.values() if c is not None}
    if len(colors) > 1 or (colors and None in seen.values()):
        listed = ", ".join(f"{n}: {c or 'none'}" for n, c in sorted(seen.items()))
        raise PreflightError(
            f"the load balancers disagree on the live color ({listed}); nothing was changed",
            hint="check their configs, then switch them all with `invoke rollback` or a deploy"
            " limited to one load balancer's fleet",
        )
    color = next(iter(colors), None)
    if color is not None and color not in traffic.colors:
        raise PreflightError(
            f"the load balancer records {color!r} as live, which is not one of the colors"
            f" {', '.join(traffic.colors)}; nothing was changed",
            hint="strategy.blue_green.colors changed? rename the groups back, or reset the"
            " load balancer's .deploy/history.jsonl",
        )
    return color


def color_plan(plan: DeployPlan, traffic: TrafficPlan, color: str) -> DeployPlan:
    """The deploy plan for one color's hosts: one batch, the migration on its first host that
    matches migrate.run_on (else its first host): the new release is staged only there."""
    names = traffic.members[color]
    sub = plan.without({hp.name for hp in plan.hosts if hp.name not in names})
    migrate_host = None
    if plan.playbook.migrate is not None:
        run_on = plan.playbook.migrate.run_on
        matching = [
            hp.name for hp in sub.hosts if run_on in (None, hp.name) or run_on in hp.host.groups
        ]
        migrate_host = (matching or [sub.hosts[0].name])[0]
    return replace(sub, batches=(tuple(names),), migrate_host=migrate_host)
