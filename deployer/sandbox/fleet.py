"""Start, drive and tear down a fleet of sandbox hosts: one container per host, each running
sshd on its own loopback address (127.0.0.N) with host networking, reached with strict host
key checking through a known_hosts file written here. One host's container (labels, key,
waiting for sshd): containers.py.

It must never create a Docker network or use an address outside 127.0.0.0/8: test traffic
stays on this machine. Containers carry labels so a fleet can be found and removed later.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# The reaper image cannot be pulled here (no registry): testcontainers must not start it.
# testcontainers reads this when first asked, so it is set before anything uses it.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

import docker  # noqa: E402
import docker.errors  # noqa: E402
import paramiko  # noqa: E402
import yaml  # noqa: E402
from docker.models.containers import Container  # noqa: E402
from testcontainers.core.config import testcontainers_config  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402

from deployer.sandbox.containers import (  # noqa: E402
    DEFAULT_PORT,
    DEPLOY_USER,
    LABEL_ADDRESS,
    LABEL_FLEET,
    LABEL_HOST,
    LABEL_INDEX,
    LABEL_PORT,
    LABEL_STATE_DIR,
    SHARED_DIR,
    SMALL_DISK,
    SMALL_DISK_SIZE,
    SandboxHost,
    address_is_free,
    await_ssh,
    check_address,
    check_name,
    docker_client,
    ensure_deploy_key,
    fleet_containers,
    parallel,
    read_host_key,
)
from deployer.sandbox.image import SandboxError, ensure_image  # noqa: E402
from deployer.sandbox.sshd_log import count_log  # noqa: E402

testcontainers_config.ryuk_disabled = True  # in case testcontainers was imported earlier

__all__ = ["Fleet", "down_fleet", "find_fleet", "start_fleet"]


class Fleet:
    """A running sandbox fleet. Methods taking a host accept a SandboxHost or its name."""

    def __init__(
        self,
        name: str,
        hosts: Sequence[SandboxHost],
        key_path: Path,
        known_hosts_path: Path,
        *,
        client: docker.DockerClient | None = None,
    ) -> None:
        self.name = name
        self.hosts = list(hosts)
        self.key_path = key_path
        self.known_hosts_path = known_hosts_path
        self.state_dir = key_path.parent
        self._client = client or docker_client()
        self._known_hosts_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Fleet({self.name!r}, hosts={[h.name for h in self.hosts]!r})"

    # ------------------------------------------------------------------ lookup

    def host(self, host: SandboxHost | str) -> SandboxHost:
        if isinstance(host, SandboxHost):
            return host
        for candidate in self.hosts:
            if candidate.name == host:
                return candidate
        raise KeyError(f"fleet {self.name} has no host {host!r}")

    def _container(self, host: SandboxHost | str) -> Container:
        return self._client.containers.get(self.host(host).container_id)

    # ------------------------------------------------------------------ driving hosts

    def exec(self, host: SandboxHost | str, command: str, *, user: str = "root") -> tuple[int, str]:
        """Run a shell command in the host's container (not over SSH); (exit code, output)."""
        result = self._container(host).exec_run(["/bin/sh", "-c", command], user=user)
        return int(result.exit_code), result.output.decode(errors="replace")

    def sshd_counts(self, since: float) -> dict[str, Counter[str]]:
        """host name -> what its sshd logged since `since` (a UNIX time): sessions started,
        connections accepted, connection attempts (`deployer.sandbox.sshd_log`)."""
        return {
            h.name: count_log(self._container(h).logs(since=since).decode(errors="replace"))
            for h in self.hosts
        }

    def ssh_client(self, host: SandboxHost | str, *, timeout: float = 10.0) -> paramiko.SSHClient:
        """A connected paramiko client as deploy, with strict host key checking."""
        target = self.host(host)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.load_host_keys(str(self.known_hosts_path))
        client.connect(
            target.address,
            port=target.port,
            username=DEPLOY_USER,
            key_filename=str(self.key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        return client

    def reset(self, paths: Sequence[str] = ("/srv", SMALL_DISK)) -> None:
        """Bring every host back to a clean state between tests, all hosts in parallel.

        Restarts stopped and unpauses paused hosts (a failed fault test may leave them so),
        kills every process of the deploy user (its SSH sessions included, never sshd
        itself, which runs as root), empties `paths` and recreates /srv owned by deploy.
        """
        for path in paths:
            if not path.startswith("/") or path.rstrip("/") == "":
                raise ValueError(f"reset path must be absolute and not '/': {path!r}")
        script = "\n".join(
            [
                f"pkill -KILL -u {DEPLOY_USER} || true",
                # Killed processes could otherwise still be writing while files are removed.
                "for _ in $(seq 100); do "
                f"pgrep -u {DEPLOY_USER} >/dev/null || break; sleep 0.05; done",
                *(
                    f"if [ -d {shlex.quote(p)} ]; then find {shlex.quote(p)} -mindepth 1 "
                    "-maxdepth 1 -exec rm -rf -- {} +; fi"
                    for p in paths
                ),
                f"install -d -o {DEPLOY_USER} -g {DEPLOY_USER} -m 0755 /srv",
            ]
        )

        def reset_host(host: SandboxHost) -> None:
            container = self._container(host)
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                self.start(host)
            code, output = self.exec(host, script)
            if code != 0:
                raise SandboxError(f"resetting {host.name} failed ({code}): {output.strip()}")

        parallel(reset_host, self.hosts)
        # The fleet-wide shared directory is emptied once, from this side.
        shared = self.state_dir / "fleet-shared"
        if shared.is_dir():
            for entry in shared.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def pause(self, host: SandboxHost | str) -> None:
        """Freeze every process of the host: connections hang, as on a hung machine."""
        self._container(host).pause()

    def unpause(self, host: SandboxHost | str) -> None:
        self._container(host).unpause()

    def stop(self, host: SandboxHost | str, *, timeout: int = 5) -> None:
        """Stop the host's container: connections are refused, its filesystem is kept."""
        self._container(host).stop(timeout=timeout)

    def start(self, host: SandboxHost | str, *, timeout: float = 30.0) -> None:
        """Start a stopped host again and wait until it accepts SSH logins."""
        target = self.host(host)
        container = self._container(target)
        container.start()
        pkey, _ = ensure_deploy_key(self.key_path)
        await_ssh(container, target.address, target.port, pkey, time.monotonic() + timeout)
        # The key lives in the container's filesystem, so it should survive a restart; if it
        # did not, record the new one rather than leave the fleet unreachable.
        self._write_known_hosts({target.name: read_host_key(container)})

    def down(self) -> None:
        """Remove every container of this fleet (the key and known_hosts files stay)."""
        down_fleet(self.name, client=self._client)

    # ------------------------------------------------------------------ files for clients

    def _write_known_hosts(self, keys: Mapping[str, str]) -> None:
        with self._known_hosts_lock:
            entries: dict[str, str] = {}
            if self.known_hosts_path.exists():
                for line in self.known_hosts_path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        pattern, key = line.split(" ", 1)
                        entries[pattern] = key
            for host_name, key in keys.items():
                host = self.host(host_name)
                entries[f"[{host.address}]:{host.port}"] = key
            text = "".join(f"{pattern} {key}\n" for pattern, key in entries.items())
            temporary = self.known_hosts_path.with_suffix(".tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(self.known_hosts_path)

    def inventory_yaml(self, groups: Mapping[str, Sequence[str]] | None = None) -> str:
        """An Ansible-shaped YAML inventory of this fleet.

        Default groups: every host in `web`, the first host also in `migrate`.
        """
        if groups is None:
            groups = {"web": [h.name for h in self.hosts], "migrate": [self.hosts[0].name]}
        children: dict[str, Any] = {}
        for group, members in groups.items():
            hosts: dict[str, Any] = {}
            for member in members:
                host = self.host(member)
                hosts[host.name] = {
                    "ansible_host": host.address,
                    "ansible_port": host.port,
                    "ansible_user": DEPLOY_USER,
                }
            children[group] = {"hosts": hosts}
        inventory = {
            "all": {
                "vars": {
                    "ansible_ssh_private_key_file": str(self.key_path),
                    "ssh_known_hosts_file": str(self.known_hosts_path),
                },
                "children": children,
            }
        }
        return yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False)


def start_fleet(
    name: str,
    hosts: Iterable[tuple[str, str]],
    state_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    image: str | None = None,
    timeout: float = 60.0,
    tmpfs: Sequence[str] = (),
) -> Fleet:
    """Start one container per (host name, 127.0.0.N address) and wait until all accept SSH.

    Leftover containers of a fleet with the same name are removed first. The deploy key
    (`id_ed25519`) and `known_hosts` are kept in state_dir. Each directory in `tmpfs` is a
    memory-backed filesystem of its own in every host, owned by the deploy user; its content
    does not survive stopping the host.
    """
    check_name("fleet", name)
    wanted = [(check_name("host", h), check_address(a)) for h, a in hosts]
    if not wanted:
        raise ValueError("a fleet needs at least one host")
    for kind, values in (
        ("host name", [h for h, _ in wanted]),
        ("address", [a for _, a in wanted]),
    ):
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate {kind} in fleet {name}: {values}")

    image = image or ensure_image()
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = state_dir / "id_ed25519"
    known_hosts_path = state_dir / "known_hosts"
    pkey, public_line = ensure_deploy_key(key_path)
    shared_dir = state_dir / "fleet-shared"
    shared_dir.mkdir(exist_ok=True)
    shared_dir.chmod(0o1777)  # the deploy user (uid 1000 in the hosts) writes here
    known_hosts_path.write_text("", encoding="utf-8")

    client = docker_client()
    down_fleet(name, client=client)
    busy = [f"{a}:{port}" for _, a in wanted if not address_is_free(a, port)]
    if busy:
        raise SandboxError(
            f"cannot start fleet {name}: already in use: {', '.join(busy)}",
            hint="another fleet may hold these addresses; `docker ps --filter label="
            f"{LABEL_FLEET}` lists sandbox hosts",
        )

    deadline = time.monotonic() + timeout

    def start_host(item: tuple[int, tuple[str, str]]) -> tuple[SandboxHost, str]:
        index, (host_name, address) = item
        labels = {
            LABEL_FLEET: name,
            LABEL_HOST: host_name,
            LABEL_INDEX: str(index),
            LABEL_ADDRESS: address,
            LABEL_PORT: str(port),
            LABEL_STATE_DIR: str(state_dir),
        }
        spec = (
            DockerContainer(image)
            .with_name(f"deployer-{name}-{host_name}")
            .with_env("SSH_ADDRESS", address)
            .with_env("SSH_PORT", str(port))
            .with_env("AUTHORIZED_KEY", public_line)
            # One directory shared by the whole fleet, standing in for the database server a
            # real fleet has: a migration run once on one host is seen by every app.
            .with_volume_mapping(str(shared_dir), SHARED_DIR, "rw")
            # Host networking: each host is just sshd bound to its own loopback address.
            .with_kwargs(network_mode="host", labels=labels)
        )
        # A deliberately tiny filesystem, for "disk full" fault tests (docker's tmpfs options;
        # testcontainers' helper only takes a size).
        spec.tmpfs[SMALL_DISK] = f"size={SMALL_DISK_SIZE},uid=1000,gid=1000,mode=0755"
        for path in tmpfs:
            spec.tmpfs[path] = "exec,uid=1000,gid=1000,mode=0755"  # docker defaults to noexec
        spec.start()
        container_id = spec.get_wrapped_container().id
        spec.get_docker_client().client.close()
        container = client.containers.get(container_id)
        await_ssh(container, address, port, pkey, deadline)
        return SandboxHost(host_name, address, port, str(container_id)), read_host_key(container)

    try:
        started = parallel(start_host, list(enumerate(wanted)))
    except BaseException:
        down_fleet(name, client=client)
        raise
    fleet = Fleet(name, [host for host, _ in started], key_path, known_hosts_path, client=client)
    fleet._write_known_hosts({host.name: key for host, key in started})
    return fleet


def find_fleet(name: str, *, client: docker.DockerClient | None = None) -> Fleet | None:
    """Rebuild a Fleet handle from the labels of its containers (None if it has none)."""
    client = client or docker_client()
    containers = fleet_containers(name, client)
    if not containers:
        return None
    containers.sort(key=lambda c: int(c.labels.get(LABEL_INDEX, "0")))
    hosts = [
        SandboxHost(
            c.labels[LABEL_HOST], c.labels[LABEL_ADDRESS], int(c.labels[LABEL_PORT]), str(c.id)
        )
        for c in containers
    ]
    state_dir = Path(containers[0].labels[LABEL_STATE_DIR])
    return Fleet(name, hosts, state_dir / "id_ed25519", state_dir / "known_hosts", client=client)


def down_fleet(name: str | None, *, client: docker.DockerClient | None = None) -> int:
    """Remove the containers of fleet `name`, or of every sandbox fleet if None; count them."""
    client = client or docker_client()
    containers = fleet_containers(name, client)

    def remove(container: Container) -> None:
        # Already gone is fine: another session or thread removed it first.
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)

    parallel(remove, containers)
    return len(containers)
