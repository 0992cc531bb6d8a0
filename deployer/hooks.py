"""Playbook hooks: local commands run once on this machine, remote ones on each host of the
phase. A failing hook stops the deploy with its output (unless run best-effort).

Every hook gets the host's variables (RELEASE_ID, DEPLOY_ENV, DEPLOY_TO, RELEASE_PATH,
SHARED_PATH), DEPLOY_HOOK (the point) and DEPLOY_HOSTS (the phase's hosts, space-separated);
rollback points get RELEASE_ID/RELEASE_PATH of the release rolled back to and ROLLBACK_FROM."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace

from deployer.errors import ConfigError, DeployerError, RemoteCommandError
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


BUILD_POINTS = ("before_build", "after_build")


def run_build_hooks(hosts: Sequence[HostPlan], point: str) -> None:
    """`before_build`/`after_build`: on this machine only, before anything connects."""
    if not hosts:
        return
    for where, _ in hosts[0].hooks.get(point, ()):
        if where != "local":
            raise ConfigError(
                f"a {point} hook runs on this machine, before any host is touched",
                key_path=f"hooks.{point}",
                hint="write it as {local: ...}, or move it to before_stage",
            )
    run_local_hooks(hosts, point)


def run_local_hooks(hosts: Sequence[HostPlan], point: str) -> None:
    """Run the point's local hooks once, rendered for the first host, with the hosts listed
    in DEPLOY_HOSTS. A failure raises with the hook's output."""
    for where, command in hosts[0].hooks.get(point, ()):
        if where == "local":
            env = {**os.environ, **_hook_env(hosts[0], point, hosts)}
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


def _run(runner: Runner, plan: DeployPlan, point: str, hosts: Sequence[HostPlan]) -> None:
    run_local_hooks(hosts, point)

    def remote(hp: HostPlan) -> None:
        for where, command in hp.hooks.get(point, ()):
            if where == "remote":
                env = _hook_env(hp, point, hosts)
                runner.step(hp.host, scripts.hook(hp.layout, point, command, env))

    problems = failures(runner.each(hosts, remote))
    if problems:
        first = next(iter(problems.values()))
        raise first


def _hook_env(hp: HostPlan, point: str, hosts: Sequence[HostPlan]) -> dict[str, str]:
    return {**hp.env, "DEPLOY_HOSTS": " ".join(h.name for h in hosts), "DEPLOY_HOOK": point}


def rollback_hosts(
    hosts: Sequence[HostPlan], to: Mapping[str, str], came_from: Mapping[str, str | None]
) -> list[HostPlan]:
    """The hosts as rollback hooks see them: RELEASE_ID and RELEASE_PATH name the release each
    host goes back to, ROLLBACK_FROM the one it leaves ('' if none). Commands were rendered
    with the plan's release, so a hook should read $RELEASE_ID rather than {{ release_id }}."""
    return [
        replace(
            hp,
            env={
                **hp.env,
                "RELEASE_ID": to[hp.name],
                "RELEASE_PATH": hp.layout.release(to[hp.name]),
                "ROLLBACK_FROM": came_from.get(hp.name) or "",
            },
        )
        for hp in hosts
    ]
