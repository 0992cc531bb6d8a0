"""The Invoke collection `flags` (list, set, push): parse options, call `deployer.flags.push`,
print, map errors to exit codes. Nothing else lives here. Wired into the root collection by
`ns.add_collection(flags)` in deployer/tasks.py.

The error wrapper mirrors deployer/tasks.py's rather than importing it, so that module can
import this one at its top without a cycle.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deployer import api
from deployer.errors import DeployerError
from deployer.events import Subscriber
from deployer.flags.push import FlagsReport, Pushed, list_flags, push_flags, set_flag
from deployer.reporters import JsonLinesReporter, TerminalReporter
from deployer.secrets import redact

__all__ = ["flags"]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_DRIFT = 6  # as `invoke status`

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


def _handles_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DeployerError as exc:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted: our lock released where reachable", file=sys.stderr)
            raise Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def _load(env: str | None, playbook: str, limit: str | None = None) -> api.Loaded:
    if not env:
        raise Exit("error: --env is required (an inventory under inventories/)", code=2)
    return api.load(api.Project(Path.cwd()), env, limit=limit, playbook=playbook)


def _options(format: str, verbose: bool, accept_new_host_keys: bool) -> api.Options:
    reporters: list[Subscriber] = []
    if format == "json":
        reporters.append(JsonLinesReporter(sys.stdout, verbose=verbose))
    elif format == "text":
        reporters.append(TerminalReporter(sys.stdout, verbose=verbose))
    else:
        raise Exit(f"error: --format must be text or json, not {format!r}", code=2)
    return api.Options(reporters=reporters, accept_new_host_keys=accept_new_host_keys)


@task(help=_help("env", "limit", "format", "accept_new_host_keys", "playbook"))
@_handles_errors
def list_(
    c: Context,
    env: str | None = None,
    limit: str | None = None,
    format: str = "text",
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Each flag of flags/<env>.yml and what every host has; exit 6 on drift."""
    if format not in ("text", "json"):
        raise Exit(f"error: --format must be text or json, not {format!r}", code=2)
    loaded = _load(env, playbook, limit)
    report = list_flags(loaded, api.Options(accept_new_host_keys=accept_new_host_keys))
    if format == "json":
        print(json.dumps(report.to_data(), indent=2))
    else:
        print(render_report(report))
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
@_handles_errors
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
    loaded = _load(env, playbook)
    result = set_flag(
        loaded,
        _options(format, verbose, accept_new_host_keys),
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
@_handles_errors
def push(
    c: Context,
    env: str | None = None,
    format: str = "text",
    verbose: bool = False,
    accept_new_host_keys: bool = False,
    playbook: str = "deploy",
) -> None:
    """Push flags/<env>.yml as it is to every host (after a hand edit, or to fix drift)."""
    loaded = _load(env, playbook)
    result = push_flags(loaded, _options(format, verbose, accept_new_host_keys))
    if format == "text":
        _summary(result, f"{result.flagset.file}: {len(result.flagset.flags)} flag(s)")


flags = Collection("flags")
flags.add_task(list_, "list")
flags.add_task(set_, "set")
flags.add_task(push, "push")
