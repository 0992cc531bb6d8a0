"""The two clients `bulk_stream` compares, each opening its connections ahead, sending one
stage stream per host and telling the CPU it spent outside this process: paramiko (our
`SSHTransport`, the call the stage step makes) and the system OpenSSH client (one
ControlMaster per host, then `ssh -S` with the stream on its stdin). See bulk_stream.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deployer.config.model import Host
from deployer.remote.shell import Script
from deployer.remote.ssh import CHUNK, SSHTransport

TIMEOUT = 900.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (ticks)
    return total / CLK_TCK


# ------------------------------------------------------------------ paramiko


class Paramiko:
    name = "paramiko"

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts
        self.transport = SSHTransport(connect_timeout=60)
        self.cipher = ""

    def connect(self, pool: ThreadPoolExecutor) -> None:
        list(pool.map(self._connect_one, self.hosts))
        conn = self.transport._connections[self.hosts[0].name]
        t = conn.client.get_transport()
        if t is not None:
            self.cipher = f"{t.local_cipher} + {t.local_mac}"

    def _connect_one(self, host: Host) -> None:
        # Opens the host's checked connection now (connect() keeps a failure for later).
        self.transport._connection(host)

    def send(self, host: Host, script: Script) -> tuple[int, str]:
        result = self.transport.run(host, script, timeout=TIMEOUT)
        return result.exit_code, result.output

    def extra_cpu(self) -> float:
        return 0.0  # the transport's threads are this process's

    def close(self) -> None:
        self.transport.close()


# ------------------------------------------------------------------ openssh


class OpenSSH:
    name = "openssh"

    def __init__(self, hosts: list[Host], key: Path, known_hosts: Path) -> None:
        self.hosts = hosts
        self.dir = Path(tempfile.mkdtemp(prefix="bulk-ssh-"))
        self.base = [
            "ssh",
            "-F", "/dev/null",  # nothing from ~/.ssh/config: the options below are all
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-i", str(key),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=60",
        ]  # fmt: skip
        self.masters: dict[str, int] = {}  # host name -> its master's pid
        self.cipher = ""

    def _socket(self, host: Host) -> str:
        return str(self.dir / f"{host.name}.sock")

    def _target(self, host: Host) -> list[str]:
        return ["-p", str(host.port), f"{host.user}@{host.address}"]

    def connect(self, pool: ThreadPoolExecutor) -> None:
        list(pool.map(self._connect_one, self.hosts))
        log = (self.dir / f"{self.hosts[0].name}.log").read_text(errors="replace")
        for line in log.splitlines():
            if "kex: client->server cipher:" in line:
                self.cipher = line.split("cipher:", 1)[1].strip()

    def _connect_one(self, host: Host) -> None:
        # `-f -N`: the client returns once the master is authenticated and in the background.
        sock = self._socket(host)
        argv = [*self.base, "-M", "-f", "-N", "-S", sock, "-o", "ControlPersist=yes", "-v"]
        argv += ["-E", str(self.dir / f"{host.name}.log"), *self._target(host)]
        subprocess.run(argv, stdin=subprocess.DEVNULL, check=True, timeout=120)
        check = subprocess.run(
            [*self.base, "-S", sock, "-O", "check", *self._target(host)],
            capture_output=True,
            text=True,
            check=True,
        )
        # "Master running (pid=N)": not our child (it daemonized), read through /proc.
        self.masters[host.name] = int(check.stderr.split("pid=")[1].split(")")[0])

    def send(self, host: Host, script: Script) -> tuple[int, str]:
        argv = [*self.base, "-S", self._socket(host), "-o", "ControlMaster=no"]
        argv += [*self._target(host), script.command_line()]
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdin is not None and proc.stdout is not None

        def feed() -> None:
            stdin = proc.stdin
            assert stdin is not None
            with contextlib.suppress(BrokenPipeError), stdin:
                for segment in script.stdin.segments:
                    if isinstance(segment, bytes):
                        stdin.write(segment)
                        continue
                    with open(segment, "rb") as fh:
                        while chunk := fh.read(CHUNK):
                            stdin.write(chunk)

        writer = threading.Thread(target=feed)
        writer.start()
        output = proc.stdout.read()
        writer.join()
        return proc.wait(), output.decode(errors="replace")

    def extra_cpu(self) -> float:
        return _proc_cpu(list(self.masters.values()))

    def close(self) -> None:
        for host in self.hosts:
            if host.name in self.masters:
                subprocess.run(
                    [*self.base, "-S", self._socket(host), "-O", "exit", *self._target(host)],
                    capture_output=True,
                )
        shutil.rmtree(self.dir, ignore_errors=True)


Variant = Paramiko | OpenSSH
