"""SSH transport on Fabric/paramiko: one connection per host for the whole run, strict host
key checking, retries only when connecting. Must never accept an unknown host key silently,
forward the agent, or put anything but the script on the command line."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import paramiko
from fabric import Connection
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from deployer.config.model import Host
from deployer.errors import HostKeyError, TransportError
from deployer.remote.shell import Script
from deployer.remote.transport import Channel, Progress, Result

CHUNK = 256 * 1024
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown keys are refused with their fingerprint, or recorded when explicitly allowed."""

    def __init__(self, host: Host, known_hosts: Path, accept_new: bool, lock: threading.Lock):
        self.host = host
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.lock = lock

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.accept_new:
            raise HostKeyError(
                self.host.name,
                f"unknown host key for {hostname} ({key.get_name()} {fingerprint(key)});"
                f" not in {self.known_hosts}",
                hint="verify the fingerprint out of band, then re-run with --accept-new-host-keys",
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self.lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SSHTransport:
    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        accept_new_host_keys: bool = False,
        keepalive: int = 15,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.accept_new_host_keys = accept_new_host_keys
        self.keepalive = keepalive
        self._connections: dict[str, Connection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._known_hosts_lock = threading.Lock()

    # ------------------------------------------------------------------ connecting

    def _connection(self, host: Host) -> Connection:
        with self._guard:
            lock = self._locks.setdefault(host.name, threading.Lock())
        with lock:
            conn = self._connections.get(host.name)
            if conn is not None and conn.is_connected:
                return conn
            conn = self._open(host)
            self._connections[host.name] = conn
            return conn

    def _open(self, host: Host) -> Connection:
        known_hosts = Path(os.path.expanduser(host.known_hosts_file or DEFAULT_KNOWN_HOSTS))
        connect_kwargs: dict[str, object] = {
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
        }
        if host.key_file:
            connect_kwargs["key_filename"] = os.path.expanduser(host.key_file)
        conn = Connection(
            host=host.address,
            user=host.user,
            port=host.port,
            connect_timeout=self.connect_timeout,
            connect_kwargs=connect_kwargs,
            forward_agent=False,
        )
        conn.client.set_missing_host_key_policy(
            _HostKeyPolicy(host, known_hosts, self.accept_new_host_keys, self._known_hosts_lock)
        )
        if known_hosts.exists():
            conn.client.load_host_keys(str(known_hosts))
        try:
            self._connect_with_retry(conn)
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                host.name,
                f"HOST KEY CHANGED for {exc.hostname}: expected {fingerprint(exc.expected_key)},"
                f" got {fingerprint(exc.key)} ({known_hosts})",
                hint="if the host was rebuilt, remove its old line from known_hosts and verify"
                " the new fingerprint; otherwise treat this as an attack",
            ) from None
        except paramiko.AuthenticationException as exc:
            raise TransportError(
                host.name,
                f"authentication failed as {host.user or 'default user'}@{host.address}:"
                f"{host.port}: {exc}",
                hint="check ansible_user and ansible_ssh_private_key_file in the inventory",
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransportError(
                host.name,
                f"cannot connect to {host.address}:{host.port}: {exc or type(exc).__name__}",
                hint="check the host is up and reachable, or exclude it with --limit",
            ) from None
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(self.keepalive)
        return conn

    @staticmethod
    @retry(
        retry=retry_if_exception_type(
            (
                socket.timeout,
                ConnectionError,
                EOFError,
                paramiko.ssh_exception.NoValidConnectionsError,
            )
        ),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _connect_with_retry(conn: Connection) -> None:
        conn.open()

    # ------------------------------------------------------------------ running

    def run(
        self,
        host: Host,
        script: Script,
        *,
        timeout: float,
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        started = time.monotonic()
        conn = self._connection(host)
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(host.name, "connection lost")
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.settimeout(timeout)
            chan.set_combine_stderr(True)
            chan.exec_command(script.command_line())
            send_error = self._send_stdin(chan, script, on_progress, cancel)
            output = self._read_all(chan, started + timeout)
            code = chan.recv_exit_status()
        except TimeoutError:
            self._drop(host)
            raise TransportError(
                host.name,
                f"step '{script.step}' timed out after {timeout:.0f}s (host not answering)",
                hint="check the host; the deploy treats it as failed",
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._drop(host)
            raise TransportError(
                host.name, f"connection lost during step '{script.step}': {exc}"
            ) from None
        if send_error is not None:
            raise TransportError(
                host.name, f"upload interrupted during step '{script.step}': {send_error}"
            )
        return Result(code, output, time.monotonic() - started)

    @staticmethod
    def _send_stdin(
        chan: paramiko.Channel,
        script: Script,
        on_progress: Progress | None,
        cancel: threading.Event | None,
    ) -> str | None:
        total = script.stdin.size
        sent = 0
        try:
            for segment in script.stdin.segments:
                if isinstance(segment, bytes):
                    chan.sendall(segment)
                    sent += len(segment)
                    if on_progress:
                        on_progress(sent, total)
                    continue
                with open(segment, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        if cancel is not None and cancel.is_set():
                            # Short stdin: the remote checksum fails and its trap cleans up.
                            return "cancelled"
                        chan.sendall(chunk)
                        sent += len(chunk)
                        if on_progress:
                            on_progress(sent, total)
        except OSError as exc:
            # The remote side ended early (e.g. disk full); its output says why.
            return str(exc)
        finally:
            with contextlib.suppress(OSError):
                chan.shutdown_write()
        return None

    @staticmethod
    def _read_all(chan: paramiko.Channel, deadline: float) -> str:
        chunks: list[bytes] = []
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            data = chan.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def open_tcp(self, host: Host, address: str, port: int, *, timeout: float) -> Channel:
        conn = self._connection(host)
        transport = conn.client.get_transport()
        if transport is None:
            raise TransportError(host.name, "connection lost")
        try:
            chan = transport.open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout
            )
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransportError(
                host.name, f"cannot reach {address}:{port} from the host: {exc}"
            ) from None
        chan.settimeout(timeout)
        return chan  # type: ignore[no-any-return]

    def _drop(self, host: Host) -> None:
        with self._guard:
            conn = self._connections.pop(host.name, None)
        if conn is not None:
            _close_quietly(conn)

    def close(self) -> None:
        with self._guard:
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            _close_quietly(conn)


def _close_quietly(conn: Connection) -> None:
    # Closing a connection that already died can fail in any number of ways; none matter.
    with contextlib.suppress(Exception):
        conn.close()
