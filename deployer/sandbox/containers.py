"""One sandbox host's container, the pieces a fleet is made of: labels and paths, the address
and name checks (127.0.0.0/8 only, never 127.0.0.1), the fleet's deploy key, waiting for sshd
to accept it, reading the host key; Docker clients and the thread pool fleet-wide operations
use. It must never create a Docker network or use an address outside 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import docker
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from docker.models.containers import Container

from deployer.sandbox.image import SandboxError

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


def check_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def parallel(func: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
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


def docker_client() -> docker.DockerClient:
    # Whole-fleet operations run in up to 16 threads; the default pool of 10 would churn.
    return docker.from_env(max_pool_size=32)


def ensure_deploy_key(key_path: Path) -> tuple[paramiko.PKey, str]:
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


def address_is_free(address: str, port: int) -> bool:
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


def await_ssh(
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


def read_host_key(container: Container) -> str:
    result = container.exec_run(["cat", HOST_KEY_FILE])
    output = result.output.decode(errors="replace").strip()
    if result.exit_code != 0 or not output.startswith("ssh-ed25519 "):
        raise SandboxError(f"cannot read {HOST_KEY_FILE} in {container.name}: {output}")
    key_type, key_b64 = output.split()[:2]
    return f"{key_type} {key_b64}"


def fleet_containers(name: str | None, client: docker.DockerClient) -> list[Container]:
    label = LABEL_FLEET if name is None else f"{LABEL_FLEET}={name}"
    found: list[Container] = client.containers.list(all=True, filters={"label": label})
    return found
