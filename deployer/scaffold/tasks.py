"""The Invoke task `init`: write the starting project into the current directory and say
what was written and what to run next. Wired into the root collection in deployer/tasks.py."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from deployer.scaffold import DEFAULT_ENV, Scaffolded, init_project
from deployer.taskkit import handles_errors, project

__all__ = ["init"]

PROGRAM = "shipfleet"


@task()
@handles_errors
def init(c: Context) -> None:
    """Start a project here: inventory, commented playbook, templates, tasks.py, CI workflow.

    Never overwrites a file: one that exists is skipped and named."""
    print(report(init_project(project().root), _program()))


def report(done: Scaffolded, program: str = PROGRAM) -> str:
    lines = [f"wrote {path}" for path in done.written]
    lines += [
        f"skipped {path}: "
        + ("already ignores run records" if path == ".gitignore" else "it exists (left as it was)")
        for path in done.skipped
    ]
    if done.gitignored:
        lines.append(f"added to .gitignore: {' '.join(done.gitignored)}")
    env = DEFAULT_ENV
    commands = [
        (
            f"{program} preflight --env {env} --accept-new-host-keys",
            "reach every host, trust and record its key, run the checklist",
        ),
        (f"{program} deploy --env {env} --dry-run", "the plan and the exact remote scripts"),
        (f"{program} deploy --env {env}", "the first release"),
    ]
    width = max(len(command) for command, _ in commands)
    lines += ["", f"next: put your hosts' addresses in inventories/{env}.yml, then run"]
    lines += [f"  {command:<{width}}  # {why}" for command, why in commands]
    return "\n".join(lines)


def _program() -> str:
    """How the user ran us, so the commands shown are the ones they would type."""
    name = Path(sys.argv[0]).name
    return "invoke" if name in ("invoke", "inv") else PROGRAM
