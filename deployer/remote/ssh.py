"""SSH transport on paramiko (Fabric reads ~/.ssh/config, remote/link.py resolves it): one
connection per host for the whole run, strict host key checking, retries only when connecting.
Must never accept an unknown host key silently, forward the agent, or put anything but the
script on the command line.

Reach follows OpenSSH's habits: `~/.ssh/config` (HostName, User, Port, IdentityFile,
ProxyJump, UserKnownHostsFile) fills in what the inventory leaves unset, and keys come from
the inventory, the config, ssh-agent or `~/.ssh/id_*`. Host keys are always checked strictly
against every known_hosts file OpenSSH reads (remote/known_hosts.py): StrictHostKeyChecking in
the config is not honoured, and a config's ProxyJump goes through the same checked jump
connection as an inventory one."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import paramiko
from fabric import Config
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from deployer.config.model import Host
from deployer.errors import ConfigError, DeployerError, HostKeyError, TransportError
from deployer.remote.ciphers import aead_first_transport
from deployer.remote.jump import Endpoint, parse_jump, proxy_jump
from deployer.remote.keyfiles import KeyCachingClient, KeyFiles
from deployer.remote.known_hosts import (
    HostKeyPolicy,
    KnownHostsFiles,
    KnownHostsReader,
    disabled_algorithms,
    host_key_name,
)
from deployer.remote.link import Link
from deployer.remote.session import SessionLost, StepSessions, small_stdin
from deployer.remote.shell import Script
from deployer.remote.transport import Channel, Progress, Result
from deployer.remote.wakeups import quiet_reader, wake_reader

CHUNK = 256 * 1024


def _unreachable(name: str, where: str, exc: BaseException) -> TransportError:
    return TransportError(
        name,
        f"cannot connect to {where}: {exc or type(exc).__name__}",
        hint="check the host is up and reachable, or exclude it with --limit",
    )


class SSHTransport:
    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        accept_new_host_keys: bool = False,
        keepalive: int = 15,
        ssh_config: str | None = None,
    ) -> None:
        """`ssh_config`: a file read instead of ~/.ssh/config (and /etc/ssh/ssh_config)."""
        self.connect_timeout = connect_timeout
        self.accept_new_host_keys = accept_new_host_keys
        self.keepalive = keepalive
        self._connections: dict[str, Link] = {}
        self._gateways: dict[str, Link] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._known_hosts_lock = threading.Lock()
        self._failed: dict[str, DeployerError] = {}  # by connect(), for the next use
        self._steps = StepSessions(connect_timeout)  # each host's steps, one session
        # Read once per run, not once per host (each again if it changes during the run).
        self._config = Config(runtime_ssh_path=ssh_config) if ssh_config else Config()
        self._key_files = KeyFiles()
        self._known_hosts = KnownHostsReader()
        self._lookups: dict[str, dict[str, object]] = {}  # address -> its ssh_config entry

    # ------------------------------------------------------------------ connecting

    def _connection(self, host: Host, *, ahead: bool = False) -> Link:
        with self._guard:
            lock = self._locks.setdefault(host.name, threading.Lock())
        with lock:
            failed = self._failed.pop(host.name, None)
            if failed is not None:  # connect() just tried: do not wait for the host twice
                raise failed
            conn = self._connections.get(host.name)
            if conn is not None and conn.is_connected:
                return conn
            try:
                conn = self._open(host)
            except DeployerError as exc:
                if ahead:
                    self._failed[host.name] = exc
                raise
            self._connections[host.name] = conn
            return conn

    def _open(self, host: Host) -> Link:
        spec = self._jump_spec(host)
        return self._connect(
            host.name,
            Endpoint(host.address, host.port, host.user),
            host,
            self._gateway(host, spec) if spec else None,
        )

    def _jump_spec(self, host: Host) -> str | None:
        """The inventory's jump host, else the ProxyJump `~/.ssh/config` gives the address."""
        return proxy_jump(host) or self._config_jump(host.address, self._ssh_config(host.address))

    @staticmethod
    def _config_jump(address: str, ssh_config: dict[str, object]) -> str | None:
        """The config's ProxyJump for an address; none when it names the address itself (as
        `Host *` does for the bastion)."""
        spec = str(ssh_config.get("proxyjump") or "none")
        if spec.lower() == "none" or parse_jump(spec.split(",")[0]).address == address:
            return None
        return spec

    def _ssh_config(self, address: str) -> dict[str, object]:
        """The config's entry for an address, looked up once per run (a copy each time)."""
        found = self._lookups.get(address)
        if found is None:
            found = self._lookups[address] = dict(self._config.base_ssh_config.lookup(address))
        return dict(found)

    def _gateway(self, host: Host, spec: str) -> Link:
        """The jump host's connection, opened once and shared by every host behind it. Its
        key is checked as strictly as any other."""
        with self._guard:
            lock = self._locks.setdefault(f"jump:{spec}", threading.Lock())
        with lock:
            conn = self._gateways.get(spec)
            if conn is None or not conn.is_connected:
                conn = self._connect(
                    host.name, parse_jump(spec), host, None, where=f"jump host {spec}"
                )
                self._gateways[spec] = conn
            return conn

    def _connect(
        self,
        name: str,
        endpoint: Endpoint,
        host: Host,
        gateway: Link | None,
        *,
        where: str | None = None,
    ) -> Link:
        """Open one checked connection. `where` names it in errors (default: the address and
        port it resolved to, with the inventory's address when the config renamed it)."""
        ssh_config = self._ssh_config(endpoint.address)
        if gateway is None and self._config_jump(endpoint.address, ssh_config):
            # Only a jump host gets here with a ProxyJump of its own: a chain this transport
            # would not follow (it would connect to the jump host directly instead).
            raise TransportError(
                name,
                f"{where or endpoint.address} has its own ProxyJump in ~/.ssh/config;"
                " chains of jump hosts are not supported",
                hint="jump through a single host, or reach it through an ssh tunnel",
            )
        files = KnownHostsFiles.for_host(host.known_hosts_file, ssh_config)
        connect_kwargs: dict[str, object] = {
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
            "transport_factory": aead_first_transport,
        }
        if host.key_file:
            connect_kwargs["key_filename"] = os.path.expanduser(host.key_file)
        try:
            conn = Link(
                endpoint.address,
                user=endpoint.user,
                port=endpoint.port,
                ssh_config=ssh_config,
                # A plain SSHClient, but reading each key file once per run. Never an agent
                # forwarded: a jump host is reached by ProxyJump instead.
                client=KeyCachingClient(self._key_files),
                connect_timeout=self.connect_timeout,
                connect_kwargs=connect_kwargs,
                # A jump host's connection is checked like any other (see _gateway). A
                # ProxyCommand (from ssh_config) is only a socket: the key is still checked here.
                gateway=gateway,
            )
        except ValueError as exc:  # e.g. `Port abc` in the config
            raise ConfigError(
                f"~/.ssh/config for {endpoint.address}: {exc}",
                hint="fix that entry (`ssh -G ADDRESS` shows what OpenSSH makes of it)",
            ) from None
        if where is None:
            where = f"{conn.host}:{conn.port}"
            if conn.host != endpoint.address:
                where += f" ({endpoint.address} in ~/.ssh/config)"
        # No key is given to paramiko, so it asks the policy about every key it is shown.
        known = files.keys_for(host_key_name(conn.host, int(conn.port)), self._known_hosts)
        if disabled := disabled_algorithms(known):  # only the key types pinned are offered
            conn.connect_kwargs["disabled_algorithms"] = {"keys": disabled}
        conn.client.set_missing_host_key_policy(
            HostKeyPolicy(
                name,
                files,
                known,
                accept_new=self.accept_new_host_keys,
                lock=self._known_hosts_lock,
            )
        )
        try:
            self._connect_with_retry(conn)
        except HostKeyError:
            raise
        except paramiko.AuthenticationException as exc:
            raise TransportError(
                name,
                f"authentication failed as {conn.user}@{where}: {exc}",
                hint="check ansible_user and ansible_ssh_private_key_file in the inventory",
            ) from None
        except paramiko.SSHException as exc:
            if "no authentication methods" not in str(exc).lower():
                raise _unreachable(name, where, exc) from None
            raise TransportError(
                name,
                f"authentication failed as {conn.user}@{where}: no key to offer",
                hint="name one with ansible_ssh_private_key_file (or IdentityFile in"
                " ~/.ssh/config), or load it into ssh-agent",
            ) from None
        except (OSError, EOFError) as exc:
            raise _unreachable(name, where, exc) from None
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(self.keepalive)
            quiet_reader(transport, self.keepalive)
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
    def _connect_with_retry(conn: Link) -> None:
        conn.open()

    def connect(self, host: Host) -> None:
        with contextlib.suppress(DeployerError):  # kept for the host's next use
            self._connection(host, ahead=True)

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
        stdin = small_stdin(script)
        try:
            if stdin is not None:
                ran = self._steps.run(host.name, transport, script, stdin, started + timeout)
                if ran is not None:
                    if on_progress and stdin:
                        on_progress(len(stdin), len(stdin))
                    return Result(ran[0], ran[1], time.monotonic() - started)
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
                f"step '{script.step}' timed out after {timeout:.0f}s",
                hint="the host stopped answering, or the step's command is still running"
                " (a process it left in the background keeps its output open unless"
                " redirected: `cmd >log 2>&1 &`); the deploy treats the host as failed",
            ) from None
        except (OSError, paramiko.SSHException, EOFError, SessionLost) as exc:
            self._drop(host)
            raise TransportError(
                host.name, f"connection lost during step '{script.step}': {exc}"
            ) from None
        # A script that stopped reading and exited with its own error (a failed download, a
        # full disk) has said why in its output: that, not the broken pipe, is the failure.
        if send_error is not None and (send_error == "cancelled" or code <= 0):
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
        return chan

    def _drop(self, host: Host) -> None:
        self._steps.forget(host.name)
        with self._guard:
            conn = self._connections.pop(host.name, None)
        if conn is not None:
            _close_quietly(conn)

    def close(self) -> None:
        with self._guard:
            hosts = list(self._connections.values())
            gateways = list(self._gateways.values())
            self._connections.clear()
            self._gateways.clear()
            self._failed.clear()
            self._steps.clear()
        # Closing joins each connection's reader thread: one at a time, that is a wait per
        # host at the end of every run. Hosts close together first, then the jump hosts
        # their channels ride on.
        for group in (hosts, gateways):
            threads = [threading.Thread(target=_close_quietly, args=(c,)) for c in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()


def _close_quietly(conn: Link) -> None:
    # Closing a connection that already died can fail in any number of ways; none matter.
    with contextlib.suppress(Exception):
        wake_reader(conn.client.get_transport())
        conn.close()
