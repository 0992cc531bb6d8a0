"""The hosts' own work with no tool at all, measured in the same run as the tools: what no
tool can beat on this machine, where every host shares its cores.

- stage floor: the release as a plain tar.gz (gzip level 1, as every tool packs) streamed by
  OpenSSH into `tar -xzf -` on every host at once (what any first deploy makes hosts do);
- restart floor, in one batch (a rollback's shape) and in batches of 25% (a deploy's rollout):
  on every host of a batch at once, switch `current` to the other staged release, run its
  `bin/restart` and poll `/health` on the host itself until it answers 200 with that release.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from pathlib import Path

from benchmarks.projects import DEPLOY_TO, Host
from deployer.sandbox.fleet import Fleet

PORT = 2222


def reset(fleet: Fleet) -> None:
    """Fresh hosts, and the deleted files' writeback done before the next run starts."""
    fleet.reset()
    os.sync()


def ssh_argv(fleet: Fleet, address: str, control: Path | None = None) -> list[str]:
    """OpenSSH to a host as the tools connect; with `control`, through a persistent master
    connection kept in that directory."""
    shared = (
        ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", "ControlPersist=120"]
        if control
        else []
    )
    return [
        "ssh",
        *shared,
        "-i",
        str(fleet.key_path),
        "-o",
        f"UserKnownHostsFile={fleet.known_hosts_path}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        str(PORT),
        f"deploy@{address}",
    ]


def openssh_everywhere(
    fleet: Fleet,
    commands: dict[str, str],
    stdin: Path | None = None,
    control: Path | None = None,
) -> float:
    """Run one command per host address over OpenSSH, all at once (each fed `stdin` when
    given); the wall time until the last one ends. A command that fails raises."""
    started = time.monotonic()
    with contextlib.ExitStack() as files:
        procs = [
            subprocess.Popen(
                [*ssh_argv(fleet, address, control), command],
                stdin=files.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            for address, command in commands.items()
        ]
        codes = [proc.wait() for proc in procs]
    wall = time.monotonic() - started
    if any(codes):
        raise RuntimeError(f"OpenSSH commands failed on some host: exit codes {codes}")
    return wall


def pack_floor_archive(tree_dir: Path, archive: Path) -> None:
    """The release as a plain tar.gz at gzip level 1 (the level every tool packs at), for
    unpack_floor."""
    subprocess.run(
        ["tar", "--use-compress-program=gzip -1", "-cf", str(archive), "-C", str(tree_dir.parent),
         tree_dir.name],
        check=True,
    )  # fmt: skip


def unpack_floor(fleet: Fleet, archive: Path, hosts: list[Host]) -> float:
    """Wall time of the work every tool's first deploy makes the hosts do, with no tool at
    all: the archive streamed by OpenSSH into `tar -xzf -` on every host at once. On this
    machine the hosts share its cores, so no tool can deploy to these hosts faster than this;
    on a real fleet each host would do its part on its own CPU."""
    reset(fleet)
    unpack = "mkdir -p /srv/floor && tar -xzf - -C /srv/floor"
    return openssh_everywhere(fleet, {h.address: unpack for h in hosts}, archive)


def batches(hosts: list[Host], percent: int = 25) -> list[list[Host]]:
    """Hosts in batches of `percent`, rounded down and at least one host, as the tools'
    `serial: 25%` (5 hosts: 5 batches of 1; 20 hosts: 4 of 5)."""
    size = max(1, len(hosts) * percent // 100)
    return [hosts[i : i + size] for i in range(0, len(hosts), size)]


def _switch_restart_healthy(address: str) -> str:
    """Switch `current` to the newest staged release that is not live, restart it, and poll
    /health from the host itself (every 50 ms, up to 120 s) until it names that release."""
    url = shlex.quote(f"http://{address}:8000/health")
    return (
        f"cd {shlex.quote(DEPLOY_TO)}"
        ' && live=$(basename "$(readlink current)")'
        ' && new=$(ls releases | grep -vxF "$live" | tail -n1)'
        ' && ln -sfn "releases/$new" .current.floor && mv -T .current.floor current'
        ' && "releases/$new/bin/restart" >/dev/null'
        " && for _ in $(seq 2400); do"
        f' curl -fsS {url} 2>/dev/null | grep -qF "\\"version\\": \\"$new\\"" && exit 0;'
        " sleep 0.05; done; exit 1"
    )


def restart_floor(fleet: Fleet, hosts: list[Host], percent: int = 100) -> list[float]:
    """Wall time of each batch of the hosts' own part of a rollout, with no tool: switch to
    the other staged release, restart, first HTTP 200 with it (see _switch_restart_healthy),
    over OpenSSH on every host of a batch at once, batch after batch. Needs two releases on
    every host (after a tool's first deploy and redeploy). Connections are opened before
    and kept (ControlMaster), as every tool keeps its own: no batch pays for a handshake."""
    control = Path(f"/tmp/bench-floor-{os.getpid()}")
    control.mkdir(exist_ok=True)
    try:
        openssh_everywhere(fleet, {h.address: "true" for h in hosts}, control=control)
        return [
            openssh_everywhere(
                fleet,
                {h.address: _switch_restart_healthy(h.address) for h in batch},
                control=control,
            )
            for batch in batches(hosts, percent)
        ]
    finally:
        for sock in control.iterdir():  # close the masters: they would count as a tool's
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "floor"],
                capture_output=True,
                check=False,
                timeout=10,
            )
        with contextlib.suppress(OSError):
            control.rmdir()
