"""A host's resource use as its `prepare` step reported it (see deployer/remote/resources.py),
judged against the playbook's limits, and said in one line for people. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deployer.config.model import ResourceLimits
from deployer.printable import one_line

__all__ = ["HostResources", "Process", "describe", "over_limits", "parse_resources"]


@dataclass(frozen=True)
class Process:
    pid: int
    cpu_percent: float  # over its lifetime, as ps shows %CPU
    rss_kb: int
    name: str


@dataclass(frozen=True)
class HostResources:
    cpus: int | None = None
    load: tuple[float, float, float] | None = None  # 1, 5, 15 minutes
    mem_total_kb: int | None = None
    mem_available_kb: int | None = None
    disk_total_kb: int | None = None  # the filesystem under deploy_to
    disk_free_kb: int | None = None
    inodes_total: int | None = None
    inodes_free: int | None = None
    app_source: str | None = None  # "pidfile PATH" / "systemd unit NAME"; None: not asked
    processes: tuple[Process, ...] = ()

    @property
    def memory_available_percent(self) -> float | None:
        return _percent(self.mem_available_kb, self.mem_total_kb)

    @property
    def disk_free_percent(self) -> float | None:
        return _percent(self.disk_free_kb, self.disk_total_kb)

    @property
    def inodes_free_percent(self) -> float | None:
        return _percent(self.inodes_free, self.inodes_total)


def _percent(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else 100 * part / whole


def _ints(text: str, count: int) -> list[int] | None:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        return None
    return values if len(values) == count else None


def parse_resources(
    fields: str, app_source: str | None, proc_lines: Sequence[str]
) -> HostResources:
    """`fields`: the `resources` line's `key=value` words; `proc_lines`: "pid cpu rss name"."""
    values = dict(word.partition("=")[::2] for word in fields.split())
    cpus = _ints(values.get("cpus", ""), 1)
    mem = _ints(values.get("mem", ""), 2)
    disk = _ints(values.get("disk", ""), 2)
    inodes = _ints(values.get("inodes", ""), 2)
    load: tuple[float, float, float] | None = None
    try:
        one, five, fifteen = (float(v) for v in values.get("load", "").split(","))
        load = (one, five, fifteen)
    except ValueError:
        pass
    processes = []
    for line in proc_lines:
        parts = line.split(maxsplit=3)
        try:
            processes.append(Process(int(parts[0]), float(parts[1]), int(parts[2]), parts[3]))
        except (ValueError, IndexError):
            continue
    return HostResources(
        cpus=cpus[0] if cpus else None,
        load=load,
        mem_total_kb=mem[0] if mem else None,
        mem_available_kb=mem[1] if mem else None,
        disk_total_kb=disk[0] if disk else None,
        disk_free_kb=disk[1] if disk else None,
        inodes_total=inodes[0] if inodes else None,
        inodes_free=inodes[1] if inodes else None,
        app_source=app_source,
        processes=tuple(processes),
    )


def over_limits(r: HostResources, limits: ResourceLimits) -> list[str]:
    """Why this host is above the limits, one phrase each; [] when within them (or unknown)."""
    out = []
    limit = limits.max_load_per_cpu
    if limit is not None and r.load and r.cpus and r.load[0] / r.cpus > limit:
        out.append(f"load {r.load[0]:.2f} on {r.cpus} CPU(s) is above {limit:g} per CPU")
    for what, value, limit in (
        ("memory available", r.memory_available_percent, limits.min_memory_available_percent),
        ("disk free under deploy_to", r.disk_free_percent, limits.min_disk_free_percent),
        ("inodes free under deploy_to", r.inodes_free_percent, limits.min_inodes_free_percent),
    ):
        if limit is not None and value is not None and value < limit:
            out.append(f"{what} {value:.1f}% is below {limit:g}%")
    return out


def _size(kb: int | None) -> str:
    if kb is None:
        return "?"
    size = float(kb)
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "KiB" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}%"


def describe(r: HostResources) -> str:
    """e.g. load 0.42/2 CPUs, memory 1.2 GiB available (31%), disk 70.1 GiB free (59%),
    inodes 97% free; app (pidfile ...): pid 81 1.3% CPU 24.0 MiB"""
    load = f"load {r.load[0]:.2f}/{r.cpus or '?'} CPUs" if r.load else "load ?"
    text = (
        f"{load}, memory {_size(r.mem_available_kb)} available"
        f" ({_pct(r.memory_available_percent)}), disk {_size(r.disk_free_kb)} free"
        f" ({_pct(r.disk_free_percent)}), inodes {_pct(r.inodes_free_percent)} free"
    )
    if r.app_source is None:
        return text
    if not r.processes:
        return f"{text}; app ({r.app_source}): not running"
    procs = ", ".join(
        f"pid {p.pid} {one_line(p.name)} {p.cpu_percent:.1f}% CPU {_size(p.rss_kb)}"
        for p in r.processes
    )
    return f"{text}; app ({r.app_source}): {procs}"
