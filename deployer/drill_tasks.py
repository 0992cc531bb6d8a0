"""The Invoke task `drill`: parse options, call `deployer.api.drill`, print its timings, map
errors to exit codes. Nothing else lives here. Wired into the root collection in
deployer/tasks.py."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from deployer import api
from deployer.taskkit import HelpTask, echo, handles_errors, help_for, load, options

__all__ = ["drill"]


@task(
    klass=HelpTask,
    help=help_for(
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
    ),
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
    from deployer.drill import Smoke  # here: `invoke --list` need not load the drill

    result = api.drill(
        load(env, limit=limit, playbook=playbook),
        options(format, verbose, accept_new_host_keys),
        hold=hold,
        smoke=Smoke(smoke, on_hosts=smoke_on_hosts) if smoke else None,
        schema_ok=schema_ok,
        yes=yes,
    )
    if format == "text":  # release ids come from the hosts' records
        t = result.timings
        echo(f"time to restore {result.target}: {t['restore']:.1f}s (every host verified)")
        echo(f"held on it:       {t['hold']:.1f}s")
        echo(f"time to roll forward to {result.live}: {t['forward']:.1f}s (every host verified)")
