"""The load balancer's remote step for draining (rolling and canary batches): install an
upstream config that marks some app hosts down (or none), validate it, reload, and wait
until the load balancer no longer holds requests on the old config. Pure: builds the
script only. It must never leave a config that failed validation in place.

The config travels inside the script, not on stdin: it names hosts and ports only (no
secrets; the template sees no secret values), and a put-back must still reach the host
after Ctrl-C, when the transport stops streaming stdin.
"""

from __future__ import annotations

from typing import Literal

from deployer.remote.lb import install_config, step_line
from deployer.remote.scripts import MARK
from deployer.remote.shell import Script, cmd, q

Settle = Literal["nginx", "timeout", "none"]
TIMED_OUT = "drain-timeout"  # marker printed when in-flight requests outlived the wait

# Pids of the nginx worker processes (shutting down or not), from /proc: no procps needed.
_NGINX_WORKERS = (
    "nginx_workers() { for d in /proc/[0-9]*; do"
    " case \"$(tr '\\0' ' ' < \"$d/cmdline\" 2>/dev/null || true)\" in"
    ' "nginx: worker process"*) echo "${d#/proc/}";; esac; done; }'
)


def set_upstream(
    run_id: str,
    *,
    dest: str,
    config: bytes,
    validate: str | None,
    reload: str,
    settle: Settle,
    timeout: float,
    what: str,
    step: str = "drain",
) -> Script:
    """Install `config` at `dest`, validate, reload, then settle: "nginx" waits until the
    workers that ran before the reload have exited (nginx lets a worker finish its in-flight
    requests after a reload, then it exits: that is nginx's own "drained" signal), at most
    `timeout` s; "timeout" waits `timeout` s; "none" returns at once. A wait that runs out
    prints a marker and succeeds: the wait is bounded by design. A rejected config or a
    failed reload puts the previous file back and exits non-zero: traffic stays as it was."""
    body = install_config(
        run_id,
        dest=dest,
        write=lambda tmp: f"printf '%s' {q(config.decode())} > {q(tmp)}",
        validate=validate,
        reload=reload,
        rejected=(
            f"{validate!r} rejected the config that {what}; the previous config is back in"
            " place and the load balancer still serves as before"
        ),
        reload_failed=f"{reload!r} failed; the previous {dest} is back in place",
        # The workers that serve requests on the old config: the ones settling waits for.
        before_reload=[_NGINX_WORKERS, "before=$(nginx_workers)"] if settle == "nginx" else [],
    )
    tenths = max(0, round(timeout * 10))
    if settle == "nginx":
        body += [
            step_line("settle"),
            "i=0",
            "while :; do",
            "  busy=''; for p in $before; do if [ -e /proc/$p ]; then busy=\"$busy $p\"; fi; done",
            '  [ -z "$busy" ] && break',
            f"  if [ $i -ge {tenths} ]; then {cmd('echo', MARK + TIMED_OUT)}"
            ' "workers$busy still busy"; break; fi',
            "  sleep 0.1; i=$((i + 1))",
            "done",
            f"echo {q(MARK + 'settled')} $((i / 10)).$((i % 10))",
        ]
    elif settle == "timeout" and tenths:
        body += [step_line("settle"), cmd("sleep", f"{tenths / 10:g}")]
    return Script(step=step, lines=tuple(body))
