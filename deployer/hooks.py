"""Playbook hooks: local commands run once on this machine, remote ones on each host of the
phase. A failing hook stops the deploy with its output (unless run best-effort)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from deployer.errors import DeployerError, RemoteCommandError
from deployer.events import Notice
from deployer.plan import DeployPlan, HostPlan
from deployer.remote import scripts
from deployer.runner import Runner, failures


def run_hooks(
    runner: Runner,
    plan: DeployPlan,
    point: str,
    hosts: Sequence[HostPlan],
    *,
    best_effort: bool = False,
) -> None:
    if not hosts or not any(hp.hooks.get(point) for hp in hosts):
        return
    try:
        _run(runner, plan, point, hosts)
    except DeployerError as exc:
        if not best_effort:
            raise
        runner.bus.emit(Notice(level="error", text=f"hook {point} failed: {exc}"))


def _run(runner: Runner, plan: DeployPlan, point: str, hosts: Sequence[HostPlan]) -> None:
    # Local hooks are rendered like remote ones; the first host's rendering is used.
    for where, command in hosts[0].hooks.get(point, ()):
        if where == "local":
            env = {
                **os.environ,
                **hosts[0].env,
                "DEPLOY_HOSTS": " ".join(hp.name for hp in hosts),
                "DEPLOY_HOOK": point,
            }
            # A hook is shell by definition.
            done = subprocess.run(
                ["bash", "-c", command],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RemoteCommandError(
                    "local",
                    f"hook {point}",
                    done.returncode,
                    done.stdout + done.stderr,
                    command=command,
                )

    def remote(hp: HostPlan) -> None:
        for where, command in hp.hooks.get(point, ()):
            if where == "remote":
                runner.step(hp.host, scripts.hook(hp.layout, point, command, hp.env))

    problems = failures(runner.each(hosts, remote))
    if problems:
        first = next(iter(problems.values()))
        raise first
