"""Start, drive and tear down a fleet of sandbox hosts: one container per host, each running
sshd on its own loopback address (127.0.0.N) with host networking, reached with strict host
key checking through a known_hosts file written here.

It must never create a Docker network or use an address outside 127.0.0.0/8: test traffic
stays on this machine. Containers carry labels so a fleet can be found and removed later.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# The reaper image cannot be pulled here (no registry): testcontainers must not start it.
# testcontainers reads this when first asked, so it is set before anything uses it.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

import docker  # noqa: E402
import docker.errors  # noqa: E402
import paramiko  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from docker.models.containers import Container  # noqa: E402
from testcontainers.core.config import testcontainers_config  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402

from deployer.sandbox.image import SandboxError, ensure_image  # noqa: E402
from deployer.sandbox.sshd_log import count_log  # noqa: E402

testcontainers_config.ryuk_disabled = True  # in case testcontainers was imported earlier

__all__ = [
    "DEFAULT_PORT",
    "Fleet",
    "SandboxHost",
    "check_address",
    "down_fleet",
    "find_fleet",
    "start_fleet",
]

DEFAULT_PORT = 2222
DEPLOY_USER = "deploy"
LABEL_FLEET = "deployer.fleet"
LABEL_HOST = "deployer.host"
LABEL_INDEX = "deployer.index"
LABEL_ADDRESS = "deployer.address"
LABEL_PORT = "deployer.port"
LABEL_STATE_DIR = "deployer.state-dir"
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"
SHARED_DIR = "/var/lib/fleet-shared"  # mounted into every host of a fleet
SMALL_DISK = "/var/small-disk"  # a tmpfs of SMALL_DISK_SIZE in every host
SMALL_DISK_SIZE = "512k"
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class SandboxHost:
    """One running sandbox host: inventory name, its own loopback address and sshd port."""

    name: str
    address: str
    port: int
    container_id: str


def check_address(address: str) -> str:
    """Return `address` if it is a usable sandbox address; raise ValueError otherwise.

    127.0.0.1 is refused too: other local services live there, and a host bound to it would
    be indistinguishable from "localhost" in test output.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    if ip.version != 4 or ip not in _LOOPBACK:
        raise ValueError(f"{address}: sandbox hosts must use a 127.0.0.0/8 address")
    if ip == ipaddress.ip_address("127.0.0.1"):
        raise ValueError("127.0.0.1 is reserved for the machine itself; use 127.0.0.2 and up")
    return str(ip)


def _check_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def _parallel(func: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """Run func over items in threads; re-raise the first failure after all have finished."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(len(items), 16)) as pool:
        futures = [pool.submit(func, item) for item in items]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


def _docker_client() -> docker.DockerClient:
    # Whole-fleet operations run in up to 16 threads; the default pool of 10 would churn.
    return docker.from_env(max_pool_size=32)


def _ensure_deploy_key(key_path: Path) -> tuple[paramiko.PKey, str]:
    """Load or create the fleet's ed25519 deploy key; return it and its OpenSSH public line."""
    if not key_path.exists():
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        # Created 0600 from the start: ssh clients refuse keys others can read.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        key_path.with_name(key_path.name + ".pub").write_text(
            public.decode() + " deployer-sandbox\n", encoding="utf-8"
        )
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key_path))
    return pkey, f"{pkey.get_name()} {pkey.get_base64()} deployer-sandbox"


def _address_is_free(address: str, port: int) -> bool:
    # Host networking shares one port space: a leftover sshd on this address would answer
    # instead of ours, so find out before starting rather than after.
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address, port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _await_ssh(
    container: Container, address: str, port: int, pkey: paramiko.PKey, deadline: float
) -> paramiko.PKey:
    """Retry a real SSH login as deploy until it works; return the host key that answered."""
    last_error: Exception | None = None
    next_status_check = 0.0
    while True:
        try:
            sock = socket.create_connection((address, port), timeout=2.0)
            transport = paramiko.Transport(sock)
            try:
                transport.banner_timeout = 5.0
                transport.start_client(timeout=5.0)
                server_key = transport.get_remote_server_key()
                transport.auth_publickey(DEPLOY_USER, pkey)
                return server_key
            finally:
                transport.close()
        except (OSError, EOFError, paramiko.SSHException) as error:
            last_error = error
        now = time.monotonic()
        if now >= next_status_check:
            # A container that died (e.g. sshd could not bind) will never answer: fail now.
            container.reload()
            if container.status not in ("created", "running"):
                logs = container.logs(tail=20).decode(errors="replace")
                raise SandboxError(
                    f"sandbox host {address}:{port} stopped ({container.status}):\n{logs}"
                )
            next_status_check = now + 1.0
        if now >= deadline:
            raise SandboxError(
                f"sshd on {address}:{port} did not accept the deploy key in time: {last_error}"
            )
        time.sleep(0.1)


def _read_host_key(container: Container) -> str:
    result = container.exec_run(["cat", HOST_KEY_FILE])
    output = result.output.decode(errors="replace").strip()
    if result.exit_code != 0 or not output.startswith("ssh-ed25519 "):
        raise SandboxError(f"cannot read {HOST_KEY_FILE} in {container.name}: {output}")
    key_type, key_b64 = output.split()[:2]
    return f"{key_type} {key_b64}"


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
        self._client = client or _docker_client()
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

        _parallel(reset_host, self.hosts)
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
        pkey, _ = _ensure_deploy_key(self.key_path)
        _await_ssh(container, target.address, target.port, pkey, time.monotonic() + timeout)
        # The key lives in the container's filesystem, so it should survive a restart; if it
        # did not, record the new one rather than leave the fleet unreachable.
        self._write_known_hosts({target.name: _read_host_key(container)})

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
    _check_name("fleet", name)
    wanted = [(_check_name("host", h), check_address(a)) for h, a in hosts]
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
    pkey, public_line = _ensure_deploy_key(key_path)
    shared_dir = state_dir / "fleet-shared"
    shared_dir.mkdir(exist_ok=True)
    shared_dir.chmod(0o1777)  # the deploy user (uid 1000 in the hosts) writes here
    known_hosts_path.write_text("", encoding="utf-8")

    client = _docker_client()
    down_fleet(name, client=client)
    busy = [f"{a}:{port}" for _, a in wanted if not _address_is_free(a, port)]
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
        _await_ssh(container, address, port, pkey, deadline)
        return SandboxHost(host_name, address, port, str(container_id)), _read_host_key(container)

    try:
        started = _parallel(start_host, list(enumerate(wanted)))
    except BaseException:
        down_fleet(name, client=client)
        raise
    fleet = Fleet(name, [host for host, _ in started], key_path, known_hosts_path, client=client)
    fleet._write_known_hosts({host.name: key for host, key in started})
    return fleet


def _fleet_containers(name: str | None, client: docker.DockerClient) -> list[Container]:
    label = LABEL_FLEET if name is None else f"{LABEL_FLEET}={name}"
    found: list[Container] = client.containers.list(all=True, filters={"label": label})
    return found


def find_fleet(name: str, *, client: docker.DockerClient | None = None) -> Fleet | None:
    """Rebuild a Fleet handle from the labels of its containers (None if it has none)."""
    client = client or _docker_client()
    containers = _fleet_containers(name, client)
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
    client = client or _docker_client()
    containers = _fleet_containers(name, client)

    def remove(container: Container) -> None:
        # Already gone is fine: another session or thread removed it first.
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)

    _parallel(remove, containers)
    return len(containers)
