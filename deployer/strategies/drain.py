"""Drain planning, pure: for a rolling or canary playbook with `strategy.drain`, which
selected hosts are load balancers (they are not deployed to), the app hosts' plan, which
hosts leave the load balancer in which batch (never below the capacity floor), and the
upstream config each load balancer gets for any set of hosts marked down. Connects to
nothing, so template errors and a template that ignores `h.down` surface before any host
is touched."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.config.model import Drain, Health, Inventory, Location
from deployer.config.render import render_file
from deployer.errors import ConfigError
from deployer.plan import DeployPlan, HostPlan, canary_batches, compute_batches
from deployer.remote import drain as drain_scripts
from deployer.strategies.balancers import (
    lb_commands,
    lb_hosts,
    lb_variables_and_dest,
    lb_verify,
    upstream_host,
)


@dataclass(frozen=True)
class DrainLb:
    """One load balancer host and its commands, rendered; `config(down)` renders its
    upstream config with the hosts in `down` marked down."""

    hp: HostPlan
    dest: str
    validate: str | None
    reload: str
    render_config: Callable[[frozenset[str]], bytes] = field(repr=False, compare=False)
    verify: tuple[HostPlan, Health] | None = None  # the load balancer asked after a put-back

    @property
    def name(self) -> str:
        return self.hp.name

    def config(self, down: frozenset[str]) -> bytes:
        return self.render_config(down)


@dataclass(frozen=True)
class BatchDrain:
    """What happens to one batch: `drained` hosts leave the load balancer before they
    restart; otherwise `reason` says why the batch restarts in service."""

    index: int
    hosts: tuple[str, ...]
    drained: bool
    in_service: int  # app hosts left serving while this batch restarts
    reason: str = ""


@dataclass(frozen=True)
class DrainPlan:
    settings: Drain
    lbs: tuple[DrainLb, ...]
    app_hosts: tuple[str, ...]
    batches: tuple[BatchDrain, ...]

    @property
    def lb_names(self) -> tuple[str, ...]:
        return tuple(lb.name for lb in self.lbs)


def keeps_floor(serving: int, leaving: int, floor: int) -> bool:
    """True when `leaving` more hosts can leave while `serving` are in service, without
    going below `floor` (an empty batch leaves nobody and always fits)."""
    return leaving == 0 or serving - leaving >= floor


def plan_batches(
    batches: Sequence[Sequence[str]], total: int, floor: int
) -> tuple[BatchDrain, ...]:
    """Each batch drained, or not when that would leave fewer than `floor` of the `total`
    app hosts in service (the batch then restarts in service, as without drain)."""
    out = []
    for index, batch in enumerate(batches, 1):
        left = total - len(batch)
        if keeps_floor(total, len(batch), floor):
            out.append(BatchDrain(index, tuple(batch), True, left))
        else:
            out.append(
                BatchDrain(
                    index,
                    tuple(batch),
                    False,
                    total,
                    f"draining it would leave {max(left, 0)} of {total} in service"
                    f" (min_in_service {floor})",
                )
            )
    return tuple(out)


def app_plan(plan: DeployPlan, lb_names: Sequence[str]) -> DeployPlan:
    """The plan minus the load balancers, its batches cut again from the app hosts alone
    (a "50%" means half the app hosts), the migration on an app host."""
    sub = plan.without(set(lb_names))
    names = [hp.name for hp in sub.hosts]
    strategy = plan.playbook.strategy
    batches = (
        canary_batches(names, strategy.canary.steps)
        if strategy.canary
        else compute_batches(names, strategy.serial)
    )
    migrate_host = plan.migrate_host
    if plan.playbook.migrate is not None and migrate_host in lb_names:
        run_on = plan.playbook.migrate.run_on
        matching = [hp.name for hp in sub.hosts if run_on in (None, hp.name)]
        matching += [hp.name for hp in sub.hosts if run_on in hp.host.groups]
        migrate_host = (matching or names)[0] if names else None
    return replace(sub, batches=tuple(tuple(b) for b in batches), migrate_host=migrate_host)


def plan_drain(
    plan: DeployPlan, inventory: Inventory, templates_dir: Path
) -> tuple[DeployPlan, DrainPlan] | None:
    """With `strategy.drain`: the app hosts' plan and the drain plan; None without it."""
    drain = plan.playbook.strategy.drain
    if drain is None:
        return None
    lb = drain.load_balancer
    where = lb.where or Location(plan.playbook.path, None, "")

    def error(message: str, hint: str) -> ConfigError:
        return ConfigError(
            message,
            file=where.file,
            line=where.line,
            key_path="strategy.drain.load_balancer.hosts",
            hint=hint,
        )

    lb_names = lb_hosts(inventory, lb.hosts)
    if not lb_names:
        raise error(
            f"{lb.hosts!r} is no host or group of {inventory.path}",
            "name the load balancer host (or its group) of the inventory, or remove"
            " strategy.drain to restart batches in service",
        )
    selected = {hp.name for hp in plan.hosts}
    if missing := [n for n in lb_names if n not in selected]:
        raise error(
            f"--limit leaves out the load balancer {', '.join(missing)}: batches cannot be"
            " drained without it",
            "include it: --limit 'web1,lb'",
        )
    apps = app_plan(plan, lb_names)
    if not apps.hosts:
        raise error("no app host is left once the load balancers are set aside", "check --limit")
    names = tuple(hp.name for hp in apps.hosts)
    lbs = tuple(_plan_lb(apps, drain, plan.host(n), inventory, templates_dir) for n in lb_names)
    batches = plan_batches(apps.batches, len(names), drain.min_in_service)
    for batch in batches:
        if batch.drained:
            _check_marks_down(lbs, frozenset(batch.hosts), where)
    return apps, DrainPlan(settings=drain, lbs=lbs, app_hosts=names, batches=batches)


def _plan_lb(
    apps: DeployPlan, drain: Drain, hp: HostPlan, inventory: Inventory, templates_dir: Path
) -> DrainLb:
    playbook = apps.playbook
    lb = drain.load_balancer
    variables, dest = lb_variables_and_dest(apps, lb, hp, inventory)
    upstream = [upstream_host(h, playbook, apps, inventory, lb.template) for h in apps.hosts]
    template = templates_dir / lb.template
    cache: dict[frozenset[str], bytes] = {}

    def config(down: frozenset[str]) -> bytes:
        if down not in cache:
            hosts: list[Mapping[str, Any]] = [{**h, "down": h["name"] in down} for h in upstream]
            cache[down] = render_file(template, {**variables, "hosts": hosts}).encode()
        return cache[down]

    config(frozenset())  # every app host in service: template errors surface now
    verify = lb_verify(lb, hp, playbook.health, variables, expect_version=False)
    validate, reload = lb_commands(lb, variables)
    return DrainLb(
        hp=hp,
        dest=dest,
        validate=validate,
        reload=reload,
        render_config=config,
        verify=verify,
    )


def _check_marks_down(lbs: Sequence[DrainLb], down: frozenset[str], where: Location) -> None:
    for lb in lbs:
        if lb.config(down) == lb.config(frozenset()):
            raise ConfigError(
                f"the load balancer template renders the same config when"
                f" {', '.join(sorted(down))} is drained: it does not mark hosts down",
                file=where.file,
                line=where.line,
                key_path="strategy.drain.load_balancer.template",
                hint="mark a drained host down in the template, e.g. for nginx:"
                " `server ...{% if h.down %} down{% endif %};` (see templates/lb/drain.conf.j2)",
            )


def describe_drain(drain: DrainPlan) -> str:
    """The dry run's part: which hosts leave the load balancer in which batch, and the
    script that drains each batch's hosts on every load balancer."""
    s = drain.settings
    out = [
        "",
        f"drain: load balancer(s) {' '.join(drain.lb_names)} (not deployed to); app hosts"
        f" {' '.join(drain.app_hosts)}; wait {s.wait}, at most {s.timeout:g}s;"
        f" min_in_service {s.min_in_service}",
    ]
    for batch in drain.batches:
        hosts = ", ".join(batch.hosts)
        if batch.drained:
            out.append(
                f"  batch {batch.index}: {hosts} leave(s) the load balancer"
                f" ({batch.in_service} in service), restart, come back"
            )
        else:
            out.append(f"  batch {batch.index}: {hosts} restart(s) in service: {batch.reason}")
    for lb in drain.lbs:
        for batch in drain.batches:
            if not batch.drained:
                continue
            down = frozenset(batch.hosts)
            script = drain_scripts.set_upstream(
                "<run>",
                dest=lb.dest,
                config=lb.config(down),
                validate=lb.validate,
                reload=lb.reload,
                settle=s.wait,
                timeout=s.timeout,
                what=f"drains {', '.join(batch.hosts)}",
            )
            out.append("")
            out.append(f"== {lb.name}: batch {batch.index} drained")
            out.extend("   " + line for line in script.render().splitlines())
    return "\n".join(out) + "\n"
