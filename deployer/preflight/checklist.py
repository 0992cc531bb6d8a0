"""The checklist built from the facts (every item, in order, secrets masked) and what stops a
deploy: critical failures, the others unless overridden, warnings too when strict. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from deployer.errors import ConfigError, PreflightError
from deployer.events import CheckItem, Checklist
from deployer.preflight.fleet import (
    check_cleanup,
    check_disk,
    check_health,
    check_hosts,
    check_lock,
    check_resources,
    check_rollback,
)
from deployer.preflight.local import check_config, check_migration, check_notify, check_source
from deployer.preflight.model import (
    ALL_WARNINGS,
    CLEANUP,
    DISK,
    FAIL,
    HEALTH,
    HOSTS,
    ITEMS,
    LOCK,
    OVERRIDABLE,
    RESOURCES,
    ROLLBACK,
    SKIP,
    WARN,
    FleetFacts,
    LocalFacts,
    Policy,
    make_item,
)
from deployer.secrets import redact

_DEFAULT_POLICY = Policy()  # frozen: one shared default


def build_checklist(local: LocalFacts, fleet: FleetFacts | None) -> tuple[CheckItem, ...]:
    """Every item, in order. `fleet` None: the hosts could not be asked (the plan did not
    render), so the items that need them are skipped."""
    if fleet is None:
        why = "not checked: the configuration does not render (see config)"
        fleet_items = [make_item(name, SKIP, why) for name in (HOSTS, LOCK, DISK)]
        late = [
            make_item(HEALTH, SKIP, why),
            make_item(ROLLBACK, SKIP, why),
            make_item(RESOURCES, SKIP, why),
            make_item(CLEANUP, SKIP, why),
        ]
    else:
        fleet_items = [
            check_hosts(local, fleet),
            check_lock(local, fleet),
            check_disk(local, fleet),
        ]
        late = [
            check_health(local, fleet),
            check_rollback(local, fleet),
            check_resources(local, fleet),
            check_cleanup(local, fleet),
        ]
    items = [
        *fleet_items,
        check_config(local),
        check_source(local),
        check_migration(local),
        *late,
        check_notify(local),
    ]
    # Details quote what hosts answered (a health body, an error's output): mask secrets.
    return tuple(replace(i, detail=redact(i.detail), remedy=redact(i.remedy)) for i in items)


def decide(items: Sequence[CheckItem], policy: Policy = _DEFAULT_POLICY) -> Checklist:
    """The checklist with what blocks: every critical failure; a non-critical failure (or,
    when strict, warning) unless overridden; with `lenient` (resuming), critical ones only."""
    blocking: list[str] = []
    overridden: list[str] = []
    for item in items:
        if item.critical:
            if item.status == FAIL:
                blocking.append(item.name)
            continue
        if item.status != FAIL and not (item.status == WARN and policy.strict):
            continue
        if item.name in policy.overrides or ALL_WARNINGS in policy.overrides:
            overridden.append(item.name)
        elif not policy.lenient:
            blocking.append(item.name)
    return Checklist(
        items=tuple(items),
        blocking=tuple(blocking),
        overridden=tuple(overridden),
        strict=policy.strict,
    )


def parse_overrides(value: str | None) -> frozenset[str]:
    """`--override health,rollback` or `--override all-warnings`, checked before anything."""
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    for name in sorted(names):
        if name == ALL_WARNINGS:
            continue
        if name not in ITEMS:
            raise ConfigError(
                f"--override: unknown check {name!r}",
                hint=f"checks that can be overridden: {', '.join(OVERRIDABLE)}, or {ALL_WARNINGS}",
            )
        if ITEMS[name][1]:
            raise ConfigError(
                f"--override: {name!r} is a critical check and cannot be overridden",
                hint="fix it: `invoke preflight --env ENV` says what to do",
            )
    return names


def preflight_error(checklist: Checklist, env: str, strict_by: str = "") -> PreflightError:
    """One error naming every blocking item, its hosts and what to do; `strict_by` says what
    made warnings block (`--strict`, or the playbook's preflight.strict)."""
    blocking = [i for i in checklist.items if i.name in checklist.blocking]
    lines = [
        f"preflight: {len(blocking)} check(s) failed; nothing was changed and no lock is kept:"
    ]
    for item in blocking:
        kind = "critical" if item.critical else ("warning, strict" if item.status == WARN else "")
        lines.append(f"  {item.name}{f' ({kind})' if kind else ''}: {item.title}")
        lines += [f"    {line}" for line in item.detail.splitlines()]
        if item.remedy:
            lines.append(f"    what to do: {item.remedy}")
    if strict_by and any(i.status == WARN for i in blocking):
        lines.append(f"  warnings block because of {strict_by}")
    soft = [i.name for i in blocking if not i.critical]
    if soft:
        hint = f"to deploy anyway: --override {','.join(soft)}"
        if len(soft) < len(blocking):
            hint += " (critical checks cannot be overridden: fix those first)"
    else:
        hint = f"fix it, then check with `invoke preflight --env {env}`"
    return PreflightError("\n".join(lines), hint=hint)
