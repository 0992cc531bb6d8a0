"""What every Invoke task module shares: errors to exit codes (SIGTERM treated as Ctrl-C),
the required --env, loading the project, reporters from --format/-v, the common option help
and `-h` kept for help. Imports no task module, so each one can use it without a cycle."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.exceptions import Exit
from invoke.tasks import Task

from deployer import api
from deployer.errors import DeployerError
from deployer.printable import printable
from deployer.secrets import redact

if TYPE_CHECKING:
    from deployer.events import Subscriber

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


def help_for(*names: str, **extra: str) -> dict[str, str]:
    """The `help=` of a task: these options' common help, plus its own."""
    return {**{n: COMMON_HELP[n] for n in names}, **extra}


class HelpTask(Task[Any]):
    """A task whose options never take `-h` as their short flag (Invoke gives an option the
    first free letter of its name: `--host` and `--hold` would get it), so `-h` after the
    task's name always shows its help."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        return super().arg_opts(name, default, taken_names | {"h"})


def _quiet_paramiko() -> None:
    # With no logging configured, Python prints paramiko's errors on stderr ("Secsh channel 1
    # open FAILED: Connection refused") through its last-resort handler: noise beside our own
    # report of the same failure, and a line that breaks the live view's redraw. A handler of
    # its own keeps them out; a program that configures logging still gets them.
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _sigterm_as_interrupt() -> None:
    # A cancelled CI job sends SIGTERM: clean up exactly as for Ctrl-C.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    # A shell starts background jobs (`deploy &`, some CI runners and schedulers) with SIGINT
    # ignored, and Python keeps it ignored: such a deploy could not be stopped cleanly with
    # SIGINT at all. Stopping a deploy always means the same clean stop (docs: README).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def handles_errors(fn: F) -> F:
    """Map DeployerError to its exit code (message masked) and Ctrl-C/SIGTERM to 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _sigterm_as_interrupt()
        _quiet_paramiko()
        try:
            return fn(*args, **kwargs)
        except DeployerError as exc:
            print(f"error: {printable(redact(str(exc)))}", file=sys.stderr)
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            print(
                "interrupted: lock released and staged releases cleaned up where reachable;"
                " see the summary above",
                file=sys.stderr,
            )
            raise Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def echo(text: str) -> None:
    """Print a line built from what hosts report (status, history, lock owners): their
    terminal control characters are shown as escapes, never obeyed."""
    print(printable(text))


def project() -> api.Project:
    return api.Project(Path.cwd())


def require_env(env: str | None) -> str:
    if not env:
        raise Exit("error: --env is required (an inventory under inventories/)", code=2)
    return env


def load(env: str | None, *, limit: str | None = None, playbook: str = "deploy") -> api.Loaded:
    """The project here, its inventory `env` (required) narrowed to `limit`, and `playbook`:
    what every task that reaches hosts starts from."""
    return api.load(project(), require_env(env), limit=limit, playbook=playbook)


def options(format: str, verbose: bool, accept_new_host_keys: bool = False) -> api.Options:
    from deployer.reporters import JsonLinesReporter, terminal_reporter  # not for `--list`

    reporters: list[Subscriber] = []
    if format == "json":
        reporters.append(JsonLinesReporter(sys.stdout, verbose=verbose))
    elif format == "text":
        # Live at a terminal; line per event in CI logs and pipes (`reporters.live`).
        reporters.append(terminal_reporter(sys.stdout, verbose=verbose))
    else:
        raise Exit(f"error: --format must be text or json, not {format!r}", code=2)
    return api.Options(reporters=reporters, accept_new_host_keys=accept_new_host_keys)
