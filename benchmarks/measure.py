"""Measuring one tool run from the outside: wall time, peak memory of its process tree, and
the bytes its SSH connections carried to the hosts.

Memory: every 0.1 s the tree below the benchmark's process is walked through
/proc/PID/task/TID/children: the tool, all its descendants, and the orphans it leaves
(Ansible's ControlPersist masters daemonize; the benchmark is their subreaper, so they stay
in the tree). Both the summed RSS and the summed PSS (/proc/PID/smaps_rollup: shared pages
divided among the processes sharing them, so Ansible's forked workers are not counted many
times) are kept.

Bytes: every 0.05 s the kernel's TCP sockets are listed over netlink (sock_diag, what `ss`
uses) and, for each client socket whose remote port is the hosts' SSH port, tcp_info's
bytes_acked (payload bytes the host acknowledged) is kept, per socket cookie. One last sample
is taken after the tool exits (and before Ansible's masters are closed). A connection's bytes
after its last sample (at most 50 ms of its life, its goodbye) are missed; a connection
shorter than 50 ms may be missed whole: none of the tools opens such connections here.
Counted are SSH wire bytes (payload of TCP: encrypted packets, MACs, key exchange), not the
TCP/IP headers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")

# ------------------------------------------------------------------ TCP byte counters

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_DONE = 3
_NLMSG_ERROR = 2
_INET_DIAG_INFO = 2
_ALL_STATES = 0xFFF
_TCPI_BYTES_ACKED = 120  # offsetof(struct tcp_info, tcpi_bytes_acked)
_TCPI_BYTES_RECEIVED = 128


@dataclass(frozen=True)
class TcpSample:
    cookie: int
    local: tuple[str, int]
    remote: tuple[str, int]
    bytes_acked: int
    bytes_received: int


def tcp_sockets() -> list[TcpSample]:
    """Every IPv4 TCP socket of this network namespace with its byte counters."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        request = struct.pack(
            "=BBBBI48x",
            socket.AF_INET,
            socket.IPPROTO_TCP,
            1 << (_INET_DIAG_INFO - 1),
            0,
            _ALL_STATES,
        )
        header = struct.pack(
            "=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
        )
        nl.send(header + request)
        found: list[TcpSample] = []
        while True:
            data = nl.recv(1 << 20)
            offset = 0
            while offset < len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    raise OSError("sock_diag request failed")
                found_one = _parse_diag(data[offset + 16 : offset + length])
                if found_one is not None:
                    found.append(found_one)
                offset += (length + 3) & ~3


def _parse_diag(msg: bytes) -> TcpSample | None:
    # struct inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid
    sport, dport = struct.unpack_from("!HH", msg, 4)
    src = socket.inet_ntoa(msg[8:12])
    dst = socket.inet_ntoa(msg[24:28])
    cookie = struct.unpack_from("=Q", msg, 44)[0]
    offset = 72  # sizeof(struct inet_diag_msg); then rtattrs
    while offset + 4 <= len(msg):
        rta_len, rta_type = struct.unpack_from("=HH", msg, offset)
        if rta_len < 4:
            break
        if rta_type == _INET_DIAG_INFO and rta_len - 4 >= _TCPI_BYTES_RECEIVED + 8:
            info = msg[offset + 4 : offset + rta_len]
            acked, received = struct.unpack_from("=QQ", info, _TCPI_BYTES_ACKED)
            return TcpSample(cookie, (src, sport), (dst, dport), acked, received)
        offset += (rta_len + 3) & ~3
    return None


class TcpCounter:
    """Bytes sent by clients to `addresses`:`port` since `start()`, per host address."""

    def __init__(self, addresses: Iterable[str], port: int) -> None:
        self.addresses = set(addresses)
        self.port = port
        self._ignore: set[int] = set()
        self._sent: dict[int, tuple[str, int]] = {}  # cookie -> (host address, bytes)
        self._lock = threading.Lock()

    def start(self) -> None:
        # Connections that already exist (none, normally) belong to someone else.
        self._ignore = {s.cookie for s in tcp_sockets() if self._wanted(s)}

    def _wanted(self, sample: TcpSample) -> bool:
        return sample.remote[1] == self.port and sample.remote[0] in self.addresses

    def sample(self) -> None:
        for s in tcp_sockets():
            if s.cookie in self._ignore or not self._wanted(s):
                continue
            with self._lock:
                previous = self._sent.get(s.cookie, ("", 0))[1]
                self._sent[s.cookie] = (s.remote[0], max(previous, s.bytes_acked))

    def per_host(self) -> dict[str, int]:
        out: dict[str, int] = {a: 0 for a in self.addresses}
        with self._lock:
            for address, sent in self._sent.values():
                out[address] += sent
        return out

    @property
    def connections(self) -> int:
        return len(self._sent)


# ------------------------------------------------------------------ process tree memory


def become_subreaper() -> None:
    """Orphans of the tools' trees (Ansible's ControlPersist masters daemonize) become our
    children instead of init's, so they stay inside the measured tree."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def reap_orphans() -> None:
    """Collect the exit status of adopted orphans (closed masters), never of a live child."""
    for pid in _children(os.getpid()):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(p) for p in fh.read().split())
        except OSError:
            continue
    return out


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    return rss, pss


# Children of the benchmark that are not a tool (the S3 stand-in): never counted, nor below.
NOT_MEASURED: set[int] = set()


class TreeMemory:
    """Peak memory of every process below this one (the tool, its descendants, and orphans
    adopted through become_subreaper): this process itself, and NOT_MEASURED, are not counted."""

    def __init__(self) -> None:
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0

    def sample(self) -> None:
        tree: set[int] = set()
        stack = _children(os.getpid())
        while stack:
            pid = stack.pop()
            if pid not in tree and pid not in NOT_MEASURED:
                tree.add(pid)
                stack.extend(_children(pid))
        rss = pss = 0
        for pid in tree:
            r, p = _rss_pss(pid)
            rss += r
            pss += p
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, len(tree))


# ------------------------------------------------------------------ CPU time of the hosts


def container_cpu_seconds(container_ids: Iterable[str]) -> float | None:
    """CPU time used so far by these containers (their cgroups), or None if unreadable."""
    total = 0
    for cid in container_ids:
        for path in (
            f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage",  # cgroup v1, cgroupfs
            f"/sys/fs/cgroup/docker/{cid}/cpu.stat",  # cgroup v2, cgroupfs
            f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat",  # cgroup v2, systemd
        ):
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            if path.endswith("cpuacct.usage"):
                total += int(text)
            else:
                usec = next(ln for ln in text.splitlines() if ln.startswith("usage_usec"))
                total += int(usec.split()[1]) * 1000
            break
        else:
            return None
    return total / 1e9


# ------------------------------------------------------------------ one measured run


@dataclass
class RunResult:
    command: list[str]
    rc: int
    wall: float
    peak_rss: int
    peak_pss: int
    peak_processes: int
    bytes_per_host: dict[str, int]
    output: str
    tcp_connections: int
    started_at: float  # time.time() just before the tool started
    cpu_tool: float  # user + system seconds of the tool and the children it waited for
    cpu_hosts: float | None  # CPU seconds the hosts' containers used meanwhile
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def bytes_sent(self) -> int:
        return sum(self.bytes_per_host.values())


def run_measured(
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    addresses: Iterable[str],
    port: int,
    log_path: Path,
    before_close: object = None,
    containers: Iterable[str] = (),
    timeout: float = 1800.0,
    store: tuple[str, int] | None = None,
) -> RunResult:
    """Run `command`, sampling memory (0.1 s) and TCP bytes (0.05 s) until it exits; also the
    CPU time of the tool (its rusage) and of the hosts' containers (their cgroups).

    `before_close`, when given, is called after the final byte sample: it closes connections
    the tool left open (Ansible's ControlPersist masters), so their bytes are in. `store`
    (address, port): bytes sent there too are counted, into `extra["store_bytes"]`.
    """
    counter = TcpCounter(addresses, port)
    counter.start()
    to_store = TcpCounter([store[0]], store[1]) if store else None
    if to_store:
        to_store.start()
    containers = list(containers)
    hosts_cpu_before = container_cpu_seconds(containers)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        started_at = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        memory = TreeMemory()
        stop = threading.Event()

        def sampler() -> None:
            tick = 0
            deadline = started + timeout
            while not stop.is_set():
                counter.sample()
                if to_store:
                    to_store.sample()
                if tick % 2 == 0:
                    memory.sample()
                tick += 1
                if time.monotonic() > deadline:
                    proc.kill()
                stop.wait(0.05)

        thread = threading.Thread(target=sampler, name="sampler", daemon=True)
        thread.start()
        # wait4, not wait: its rusage holds the CPU time of the tool and its reaped children.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        stop.set()
        thread.join()
    hosts_cpu_after = container_cpu_seconds(containers)
    counter.sample()
    if to_store:
        to_store.sample()
    memory.sample()  # the ControlPersist masters are still there
    if callable(before_close):
        before_close()
    reap_orphans()
    return RunResult(
        command=command,
        rc=rc,
        wall=wall,
        peak_rss=memory.peak_rss,
        peak_pss=memory.peak_pss,
        peak_processes=memory.peak_processes,
        bytes_per_host=counter.per_host(),
        output=log_path.read_text(errors="replace"),
        tcp_connections=counter.connections,
        started_at=started_at,
        cpu_tool=usage.ru_utime + usage.ru_stime,
        cpu_hosts=(
            hosts_cpu_after - hosts_cpu_before
            if hosts_cpu_before is not None and hosts_cpu_after is not None
            else None
        ),
        extra={"store_bytes": sum(to_store.per_host().values())} if to_store else {},
    )
