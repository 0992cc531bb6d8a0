"""Invoke tasks: parse flags, load configuration, call `deployer.api`, map errors to exit
codes. Nothing else lives here. A project exposes them with `from deployer.tasks import ns`.
The root collection is assembled here; `drill`, `history`, `inventory`, `init` and the `flags`
collection live in their own modules (`deployer/*_tasks.py`, `flags/`, `scaffold/`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deployer import api
from deployer.drill_tasks import drill
from deployer.errors import DeployerError
from deployer.flags.tasks import flags as flags_collection
from deployer.history_tasks import history
from deployer.inventory_tasks import inventory
from deployer.printable import one_line, printable
from deployer.scaffold.tasks import init
from deployer.taskkit import echo, handles_errors, help_for, load, options, project

if TYPE_CHECKING:
    from deployer.inspect import HostStatus


@task(
    help=help_for(
        "env",
        "limit",
        "format",
        "verbose",
        "accept_new_host_keys",
        "playbook",
        "ref",
        "override",
        "strict",
        dry_run="print the plan and the exact remote scripts; connect to nothing",
        skip_unreachable="leave out (and report) hosts that cannot be reached",
        resume="continue the last unfinished deploy: same release, hosts already on it kept",
    )
)
@handles_errors
def deploy(
    c: Context,
    env: str | None = None,
    ref: str | None = None,
    limit: str | None = None,
    dry_run: bool = False,
    format: str = "text",
    verbose: bool = False,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
    skip_unreachable: bool = False,
    resume: bool = False,
    override: str | None = None,
    strict: bool = False,
) -> None:
    """Build one release and roll it out in health-checked batches."""
    loaded = load(env, limit=limit, playbook=playbook)
    result = api.deploy(
        loaded,
        options(format, verbose, accept_new_host_keys),
        ref=ref,
        dry_run=dry_run,
        skip_unreachable=skip_unreachable,
        resume=resume,
        override=override,
        strict=strict,
    )
    if isinstance(result, str):
        print(printable(result), end="")  # the dry run: inventory data reaches it


@task(
    help=help_for(
        "env",
        "limit",
        "format",
        "accept_new_host_keys",
        "playbook",
        "ref",
        "override",
        "strict",
    )
)
@handles_errors
def preflight(
    c: Context,
    env: str | None = None,
    ref: str | None = None,
    limit: str | None = None,
    format: str = "text",
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
    override: str | None = None,
    strict: bool = False,
) -> None:
    """The pre-deployment checklist, read-only; exits 5 when a deploy would stop on it.

    The same checklist every deploy runs after taking the lock, without taking it: nothing is
    uploaded or changed on any host."""
    loaded = load(env, limit=limit, playbook=playbook)
    checklist = api.preflight(
        loaded,
        options(format, False, accept_new_host_keys),
        ref=ref,
        override=override,
        strict=strict,
    )
    if checklist.blocking:
        raise Exit(code=5)


@task(
    help=help_for(
        "env",
        "limit",
        "format",
        "verbose",
        "accept_new_host_keys",
        "playbook",
        to="release id to return to (default: the previous successful one)",
    )
)
@handles_errors
def rollback(
    c: Context,
    env: str | None = None,
    to: str | None = None,
    limit: str | None = None,
    format: str = "text",
    verbose: bool = False,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Return the fleet to the previous successfully deployed release."""
    loaded = load(env, limit=limit, playbook=playbook)
    api.rollback(loaded, options(format, verbose, accept_new_host_keys), to=to)


@task(help=help_for("env", "limit", "format", "accept_new_host_keys", "playbook"))
@handles_errors
def status(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    format: str = "text",
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Each host's release, previous one, health, lock; exit 5 if unreachable, 6 on drift."""
    loaded = load(env, limit=limit, playbook=playbook)
    rows = api.status(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    if format == "json":
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        _print_status(rows, blue_green=loaded.playbook.strategy.kind == "blue_green")
    if any(r.error for r in rows):
        raise Exit(code=5)  # as preflight: a host cannot be reached
    if any(r.drift for r in rows):
        raise Exit(code=6)


def _print_status(rows: list[HostStatus], *, blue_green: bool) -> None:
    from deployer.resources import describe as describe_resources  # not for `invoke --list`

    width = max(len(r.host) for r in rows)
    if blue_green:
        echo(f"live color: {rows[0].live_color or 'none (traffic never switched)'}")
    for r in rows:
        if r.error:
            echo(f"{r.host:<{width}}  UNREACHABLE  {r.error.splitlines()[0]}")
            continue
        health = {True: "healthy", False: "UNHEALTHY", None: "-"}[r.healthy]
        drift = "  DRIFT" if r.drift else ""
        lock = f"  locked: {r.lock}" if r.lock else ""
        color = ""
        if blue_green:
            role = "load balancer" if r.color is None else r.color
            color = f"  [{role}{', live' if r.color and r.color == r.live_color else ''}]"
        echo(
            f"{r.host:<{width}}  current {r.current or '-'}  previous {r.previous or '-'}"
            f"  {health}{drift}{lock}{color}"
        )
        if r.foreign:  # reported, never deleted: not ours
            echo(f"{'':<{width}}  not created by this tool, left alone: {', '.join(r.foreign)}")
        if r.resources is not None:
            echo(f"{'':<{width}}  {describe_resources(r.resources)}")


@task(help=help_for("env", "limit", "accept_new_host_keys", "playbook"))
@handles_errors
def releases(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """The releases on each host, marking current (*) and the rollback target (<)."""
    loaded = load(env, limit=limit, playbook=playbook)
    rows = api.status(loaded, api.Options(accept_new_host_keys=accept_new_host_keys), health=False)
    for r in rows:
        echo(f"{r.host}:" + (f" UNREACHABLE {r.error.splitlines()[0]}" if r.error else ""))
        for rel in r.releases:
            mark = "*" if rel == r.current else ("<" if rel == r.previous else " ")
            ok = "deployed" if rel in r.successful else "never live"
            echo(f"  {mark} {rel}  ({ok})")


@task(help=help_for("env", "limit", "accept_new_host_keys", "playbook"))
@handles_errors
def unlock(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Clear a stale deploy lock (after a killed deploy). Prints who held it; exits 5 when a
    host could not be unlocked, 7 when no host had a lock."""
    loaded = load(env, limit=limit, playbook=playbook)
    results = api.unlock(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    for host, held in results.items():
        if isinstance(held, DeployerError):
            echo(f"{host}: could not unlock: {held}")
        else:
            echo(
                f"{host}: " + (f"removed lock held by {one_line(str(held))}" if held else "no lock")
            )
    if any(isinstance(held, DeployerError) for held in results.values()):
        raise Exit(code=5)
    if not any(results.values()):
        raise Exit(code=7)


@task(help=help_for("env"))
@handles_errors
def sandbox_up(c: Context, env: str = "local") -> None:
    """Start one local container per inventory host (real sshd on its 127.0.0.N)."""
    with _sandbox_extra():
        from deployer.sandbox import start_fleet

    inventory = api.load_inventory_only(project(), env)
    state = project().root / ".sandbox" / env
    fleet = start_fleet(
        f"sandbox-{env}",
        [(h.name, h.address) for h in inventory.hosts],
        state,
        port=inventory.hosts[0].port or 22,
    )
    for host in fleet.hosts:
        print(f"{host.name}: deploy@{host.address}:{host.port} up")
    print(f"key {fleet.key_path}, known_hosts {fleet.known_hosts_path}")


@task(help=help_for("env"))
@handles_errors
def sandbox_down(c: Context, env: str = "local") -> None:
    """Remove the sandbox containers of this environment."""
    with _sandbox_extra():
        from deployer.sandbox import down_fleet

    print(f"removed {down_fleet(f'sandbox-{env}')} sandbox host(s)")


@contextlib.contextmanager
def _sandbox_extra() -> Iterator[None]:
    """deployer.sandbox needs the optional extra (testcontainers, docker): say how to get it."""
    try:
        yield
    except ImportError as exc:
        raise Exit(
            f"error: the sandbox needs the sandbox extra ({exc}): pip install 'shipfleet[sandbox]'",
            code=2,
        ) from None


sandbox = Collection("sandbox")
sandbox.add_task(sandbox_up, "up")
sandbox.add_task(sandbox_down, "down")

ns = Collection(
    deploy, preflight, rollback, drill, status, releases, history, unlock, inventory, sandbox
)
ns.add_collection(flags_collection)
ns.add_task(init)
