"""What a host told us in its `prepare` step, parsed from the script's marked output. Pure."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from deployer.delta import Baseline, parse_baseline
from deployer.history import Record, parse_records
from deployer.remote.scripts import MARK
from deployer.resources import HostResources, parse_resources


@dataclass(frozen=True)
class LockHolder:
    info: dict[str, Any]
    age_seconds: int | None

    def describe(self) -> str:
        who = self.info.get("user", "?")
        where = self.info.get("from", "?")
        action = self.info.get("action", "deploy")
        release = self.info.get("release", "?")
        started = self.info.get("started", "?")
        age = f"{self.age_seconds}s ago" if self.age_seconds is not None else "at an unknown time"
        return (
            f"held by {who}@{where} ({action} of {release}, run {self.info.get('run_id', '?')}),"
            f" started {started}, {age}"
        )


@dataclass(frozen=True)
class HostFacts:
    current: str | None  # release id `current` points at, or None
    releases: tuple[str, ...]  # release directories present, sorted by name
    history: tuple[Record, ...] = ()
    free_kb: int | None = None
    lock_acquired: bool = False
    lock_holder: LockHolder | None = None
    raw_current: str = field(default="", compare=False)
    manifest_digest: str | None = None  # sha256 of the current release's MANIFEST
    baseline: Baseline | None = None  # its files, when asked for (delta uploads)
    resources: HostResources | None = None  # load, memory, disk, inodes, app processes


def parse_facts(output: str) -> HostFacts:
    section = ""
    current = ""
    releases: list[str] = []
    history: list[str] = []
    free_kb: int | None = None
    acquired = False
    holder_info: dict[str, Any] | None = None
    age: int | None = None
    held = False
    digest: str | None = None
    sections: dict[str, list[str]] = {"manifest": [], "modes": []}
    resources: str | None = None
    app_source: str | None = None
    procs: list[str] = []
    for line in output.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK) :].partition(" ")
            if key == "lock":
                acquired = value.strip() == "acquired"
                held = value.strip() == "held"
            elif key == "lockinfo":
                try:
                    holder_info = json.loads(value) if value.strip() else {}
                except ValueError:
                    holder_info = {"raw": value.strip()}
            elif key == "lockage":
                try:
                    age = int(value.strip())
                except ValueError:
                    age = None
            elif key == "resources":
                resources = value
            elif key == "app":
                app_source = value.strip()
            elif key == "proc":
                procs.append(value)
            elif key == "current":
                current = value.strip()
            elif key == "manifest_digest":
                digest = value.strip() or None
            elif key == "df":
                try:
                    free_kb = int(value.strip())
                except ValueError:
                    free_kb = None
            section = key
            continue
        if section == "releases" and line.strip():
            releases.append(line.strip())
        elif section == "history":
            history.append(line)
        elif section in sections:
            sections[section].append(line)
    current_id = posixpath.basename(current.rstrip("/")) if current else None
    baseline = None
    if current_id and digest and sections["manifest"]:
        baseline = parse_baseline(current_id, digest, sections["manifest"], sections["modes"])
    return HostFacts(
        current=current_id,
        releases=tuple(sorted(releases)),
        history=tuple(parse_records(history)),
        free_kb=free_kb,
        lock_acquired=acquired,
        lock_holder=LockHolder(holder_info or {}, age) if held else None,
        raw_current=current,
        manifest_digest=digest,
        baseline=baseline,
        resources=parse_resources(resources, app_source, procs) if resources is not None else None,
    )
