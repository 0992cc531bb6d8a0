"""The Invoke collection `flags` (list, set, push): parse options, call `deployer.flags.push`,
print, map errors to exit codes. Nothing else lives here. Wired into the root collection by
`ns.add_collection(flags)` in deployer/tasks.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deployer import api
from deployer.taskkit import echo, handles_errors, load, options

if TYPE_CHECKING:
    from deployer.flags.push import FlagsReport, Pushed

__all__ = ["flags"]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_DRIFT = 6  # as `invoke status`
EXIT_UNREACHABLE = 5  # as `invoke status`

HELP = {
    "env": "environment: inventories/<env>.yml, with its flags in flags/<env>.yml",
    "limit": "only these hosts: names, groups or globs, ',' separated; '!x' excludes",
    "format": "text (default) or json",
    "verbose": "show the exact remote scripts",
    "accept_new_host_keys": "trust and record host keys not yet in known_hosts",
    "playbook": "playbook name under playbooks/ (default: deploy): where the app lives",
}


def _help(*names: str, **extra: str) -> dict[str, str]:
    return {**{n: HELP[n] for n in names}, **extra}


@task(help=_help("env", "limit", "format", "accept_new_host_keys", "playbook"))
@handles_errors
def list_(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    format: str = "text",
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Each flag of flags/<env>.yml and what every host has; exit 5 if unreachable, 6 on drift."""
    if format not in ("text", "json"):
        raise Exit(f"error: --format must be text or json, not {format!r}", code=2)
    loaded = load(env, limit=limit, playbook=playbook)
    from deployer.flags.push import list_flags  # here: `invoke --list` need not load it

    report = list_flags(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    if format == "json":
        print(json.dumps(report.to_data(), indent=2))
    else:
        echo(render_report(report))  # what hosts report: no control characters obeyed
    if any(h.error is not None for h in report.hosts):
        raise Exit(code=EXIT_UNREACHABLE)
    if report.has_drift:
        raise Exit(code=EXIT_DRIFT)


def render_report(report: FlagsReport) -> str:
    flagset = report.flagset
    answered = [h for h in report.hosts if h.error is None]
    out = [f"{flagset.file}: {len(flagset.flags)} flag(s); {len(report.hosts)} host(s)"]
    for flag in flagset.flags:
        out.append(f"{flag.name}: {flag.state.describe()}  ({flag.description})")
        groups: dict[str, list[str]] = {}
        for h in answered:
            state = h.state(flag.name)
            if h.flags is None:
                label = "no flags file  DRIFT"
            elif state is None:
                label = "flag missing  DRIFT"
            else:
                label = state.describe() + ("" if state == flag.state else "  DRIFT")
            groups.setdefault(label, []).append(h.host)
        out += [f"  {' '.join(hosts)}: {label}" for label, hosts in groups.items()]
    for host, names in report.extra().items():
        out.append(f"{host}: has flags the file does not define: {', '.join(names)}  DRIFT")
    for h in report.hosts:
        if h.error is not None:
            out.append(f"{h.host}: UNREACHABLE  {h.error.splitlines()[0]}")
    return "\n".join(out)


def _summary(result: Pushed, what: str) -> None:
    hosts = len(result.releases)
    print(f"{what}; pushed to {hosts} host(s), no restart (sha256 {result.sha256[:12]})")


@task(
    help=_help(
        "env",
        "format",
        "verbose",
        "accept_new_host_keys",
        "playbook",
        name="the flag, as named in flags/<env>.yml",
        on="turn it on for everyone (a percentage in the file becomes 100)",
        off="turn it off for everyone, allow-list included (percent and allow kept)",
        percent="turn it on for this share of users, 0-100 (the same users as it grows)",
        allow="comma-separated user ids that always get it while it is on ('' clears)",
    ),
    auto_shortflags=False,
)
@handles_errors
def set_(
    c: Context,
    name: str,
    env: str | None = None,
    on: bool = False,
    off: bool = False,
    percent: str | None = None,
    allow: str | None = None,
    format: str = "text",
    verbose: bool = False,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Change one flag in flags/<env>.yml and push the file to every host (no deploy)."""
    share: int | None = None
    if percent is not None:
        try:
            share = int(percent)
        except ValueError:
            raise Exit(f"error: --percent takes a whole number, not {percent!r}", code=2) from None
    loaded = load(env, playbook=playbook)
    from deployer.flags.push import set_flag

    result = set_flag(
        loaded,
        options(format, verbose, accept_new_host_keys),
        name,
        on=on,
        off=off,
        percent=share,
        allow=None if allow is None else allow.split(","),
    )
    if format == "text" and result.flag is not None:
        changed = "updated" if result.file_changed else "unchanged"
        _summary(
            result,
            f"{result.flag.name}: {result.flag.state.describe()} ({changed} {result.flagset.file})",
        )


@task(help=_help("env", "format", "verbose", "accept_new_host_keys", "playbook"))
@handles_errors
def push(
    c: Context,
    env: str | None = None,
    format: str = "text",
    verbose: bool = False,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Push flags/<env>.yml as it is to every host (after a hand edit, or to fix drift)."""
    loaded = load(env, playbook=playbook)
    from deployer.flags.push import push_flags

    result = push_flags(loaded, options(format, verbose, accept_new_host_keys))
    if format == "text":
        _summary(result, f"{result.flagset.file}: {len(result.flagset.flags)} flag(s)")


flags = Collection("flags")
flags.add_task(list_, "list")
flags.add_task(set_, "set")
flags.add_task(push, "push")
