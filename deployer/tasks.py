"""Invoke tasks: parse flags, load configuration, call `deployer.api`, map errors to exit
codes. Nothing else lives here. A project exposes them with `from deployer.tasks import ns`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deployer import api
from deployer.delivery import parse_since, render_json, render_prometheus, render_text
from deployer.drill import Smoke
from deployer.errors import DeployerError
from deployer.flags.tasks import flags as flags_collection
from deployer.history import Run
from deployer.inspect import HostStatus
from deployer.printable import printable
from deployer.resources import describe as describe_resources
from deployer.scaffold.tasks import init
from deployer.taskkit import echo, handles_errors, options, project, require_env

F = TypeVar("F", bound=Callable[..., Any])

COMMON_HELP = {
    "env": "environment: inventories/<env>/ or <env>.yml, .ini, .tfstate, .tfoutput.json, a script",
    "limit": "only these hosts: names, groups or globs, ',' separated; '!x' excludes",
    "format": "text (default) or json (one event per line)",
    "verbose": "show the exact remote scripts",
    "accept_new_host_keys": "trust and record host keys not yet in known_hosts",
    "playbook": "playbook name under playbooks/ (default: deploy)",
    "ref": "git ref to deploy (when the playbook's source is git)",
    "override": "let these failed non-critical checks through: ITEM[,ITEM] or all-warnings",
    "strict": "warnings of the checklist (source not pushed, no notifications) block too"
    " (also set by preflight: {strict: true} in the playbook)",
}


def _help(*names: str, **extra: str) -> dict[str, str]:
    return {**{n: COMMON_HELP[n] for n in names}, **extra}


@task(
    help=_help(
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
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
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
    help=_help(
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
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
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
    help=_help(
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
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
    api.rollback(loaded, options(format, verbose, accept_new_host_keys), to=to)


@task(help=_help("env", "limit", "format", "accept_new_host_keys", "playbook"))
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
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
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


@task(help=_help("env", "limit", "accept_new_host_keys", "playbook"))
@handles_errors
def releases(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """The releases on each host, marking current (*) and the rollback target (<)."""
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
    rows = api.status(loaded, api.Options(accept_new_host_keys=accept_new_host_keys), health=False)
    for r in rows:
        echo(f"{r.host}:" + (f" UNREACHABLE {r.error.splitlines()[0]}" if r.error else ""))
        for rel in r.releases:
            mark = "*" if rel == r.current else ("<" if rel == r.previous else " ")
            ok = "deployed" if rel in r.successful else "never live"
            echo(f"  {mark} {rel}  ({ok})")


@task(
    help=_help(
        "env",
        "limit",
        "format",
        "verbose",
        "accept_new_host_keys",
        "playbook",
        hold="seconds to stay on the rollback target, checking health (default 30)",
        smoke="a command that must pass after each leg and through the hold (bash, here)",
        smoke_on_hosts="run --smoke on every host, in its live release, instead of here",
        schema_ok="the target's code runs on the live schema: skip the SCHEMA comparison",
        yes="drill an environment marked as production",
    )
)
@handles_errors
def drill(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    hold: float = 30.0,
    smoke: str | None = None,
    smoke_on_hosts: bool = False,
    schema_ok: bool = False,
    yes: bool = False,
    format: str = "text",
    verbose: bool = False,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Rehearse a rollback: back to the rollback target, hold, forward again; timed."""
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
    result = api.drill(
        loaded,
        options(format, verbose, accept_new_host_keys),
        hold=hold,
        smoke=Smoke(smoke, on_hosts=smoke_on_hosts) if smoke else None,
        schema_ok=schema_ok,
        yes=yes,
    )
    if format == "text":
        t = result.timings
        print(f"time to restore {result.target}: {t['restore']:.1f}s (every host verified)")
        print(f"held on it:       {t['hold']:.1f}s")
        print(f"time to roll forward to {result.live}: {t['forward']:.1f}s (every host verified)")


@task(
    help=_help(
        "env",
        "limit",
        "accept_new_host_keys",
        "playbook",
        last="how many runs to show, newest last (default 20; 0: all the hosts keep)",
        format="text (default) or json; with --stats also prometheus",
        stats="delivery metrics (the four DORA keys) instead of the runs",
        since="with --stats: only runs that ended this recently: 12h, 30d, 4w",
        rollback_window="with --stats: a rollback this long after a deploy fails it (24h)",
    )
)
@handles_errors
def history(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    last: int = 20,
    format: str = "text",
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
    stats: bool = False,
    since: str | None = None,
    rollback_window: str = "24h",
) -> None:
    """Who deployed, rolled back or drilled, when, with each host's result; --stats: DORA keys.

    Read from the hosts' own records. With --stats: deployment frequency, lead time, change
    failure rate and time to restore computed from them (text, json or prometheus)."""
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
    if stats:
        _print_stats(loaded, format, accept_new_host_keys, since, rollback_window)
        return
    found, errors = api.history(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    shown = found[-last:] if last > 0 else found
    if format == "json":
        import dataclasses
        import json

        data = {"runs": [dataclasses.asdict(r) for r in shown], "unreachable": errors}
        print(json.dumps(data, indent=2))
    else:
        for run in shown:
            echo(_history_line(run))
        for host, error in errors.items():
            echo(f"{host}: UNREACHABLE  {error.splitlines()[0]}")
    if errors:
        raise Exit(code=5)  # as status: what is shown misses those hosts


def _print_stats(
    loaded: api.Loaded, format: str, accept: bool, since: str | None, window: str
) -> None:
    render = {"text": render_text, "json": render_json, "prometheus": render_prometheus}
    if format not in render:
        raise Exit(f"error: --format must be text, json or prometheus, not {format!r}", code=2)
    stats, errors = api.delivery_stats(
        loaded,
        api.Options(accept_new_host_keys=accept),
        since=parse_since(since) if since else None,
        rollback_window=parse_since(window),
    )
    print(render[format](stats, loaded.env), end="" if format != "json" else "\n")
    for host, error in errors.items():
        print(f"{host}: UNREACHABLE  {error.splitlines()[0]}", file=sys.stderr)
    if errors:
        raise Exit(code=5)  # the figures miss those hosts' records


def _history_line(run: Run) -> str:
    by_result: dict[str, list[str]] = {}
    for host, result in run.results.items():
        by_result.setdefault(result, []).append(host)
    outcome = "; ".join(
        f"{result} on {' '.join(hosts) if len(hosts) <= 6 else f'{len(hosts)} hosts'}"
        for result, hosts in by_result.items()
    )
    drill = ""
    if run.drill:  # to the target and back, with each leg's seconds
        legs = ", ".join(
            f"{leg} {run.drill[leg]:.1f}s"
            for leg in ("restore", "hold", "forward")
            if leg in run.drill
        )
        drill = f"  [to {run.drill.get('target', '?')} and back: {legs}]"
    return (
        f"{run.time or '-':<20}  {run.user or '-':<12} {run.action:<8}  {run.release}  {outcome}"
        f"{drill}  (run {run.run_id or '-'})"
    )


@task(help=_help("env", "limit", "accept_new_host_keys", "playbook"))
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
    loaded = api.load(project(), require_env(env), limit=limit, playbook=playbook)
    results = api.unlock(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    for host, held in results.items():
        if isinstance(held, DeployerError):
            echo(f"{host}: could not unlock: {held}")
        else:
            echo(f"{host}: " + (f"removed lock held by {held}" if held else "no lock"))
    if any(isinstance(held, DeployerError) for held in results.values()):
        raise Exit(code=5)
    if not any(results.values()):
        raise Exit(code=7)


@task(
    help=_help(
        "env",
        list="every group with its hosts and children, and each host's merged variables"
        " (the default)",
        host="only this host's merged variables",
    )
)
@handles_errors
def inventory(
    c: Context, env: str | None = None, list: bool = False, host: str | None = None
) -> None:
    """Print the inventory as read, in the shape of `ansible-inventory --list` (or `--host`).

    Groups with their hosts and child groups, and `_meta.hostvars` with each host's variables
    merged as a deploy sees them (group_vars/ and host_vars/ included), secret-named values
    shown as ***. Reads files only: connects to nothing."""
    import json

    from deployer.config.ansible.listing import json_value

    data = api.inventory_listing(project(), require_env(env), host=host)
    print(json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False, default=json_value))


@task(help=_help("env"))
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


@task(help=_help("env"))
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
