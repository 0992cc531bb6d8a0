"""What a host told us in its `prepare` step, parsed from the script's marked output. Pure."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from deployer.delta import Baseline, parse_baseline
from deployer.history import Record, parse_records
from deployer.remote.scripts import MARK, STALE_FINISH
from deployer.resources import HostResources, parse_resources


@dataclass(frozen=True)
class LockHolder:
    info: dict[str, Any]
    age_seconds: int | None
    # Seconds since the holder recorded its outcome and began cleaning up; None when it
    # had not got that far.
    finishing_seconds: int | None = None

    def describe(self) -> str:
        who = self.info.get("user", "?")
        where = self.info.get("from", "?")
        action = self.info.get("action", "deploy")
        release = self.info.get("release")
        what = f"{action} of {release}" if release else action
        started = self.info.get("started", "?")
        age = f"{self.age_seconds}s ago" if self.age_seconds is not None else "at an unknown time"
        text = (
            f"held by {who}@{where} ({what}, run {self.info.get('run_id', '?')}),"
            f" started {started}, {age}"
        )
        if self.finishing_seconds is not None:
            text += (
                f"; that run recorded its outcome {self.finishing_seconds}s ago and was cleaning"
                f" up (only pruning was left): the next deploy takes this lock over once it is"
                f" {STALE_FINISH}s old, or `invoke unlock` now is safe if that run has ended"
            )
        return text


@dataclass(frozen=True)
class Unremovable:
    """A release (not the live one) holding a directory the deploy user cannot empty."""

    release: str
    owner: str
    path: str  # relative to the release


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
    foreign: tuple[tuple[str, str], ...] = ()  # (kind, name) in deploy_to we did not create
    unremovable: tuple[Unremovable, ...] = ()
    stale_lock: dict[str, Any] | None = None  # a recorded run's lock we took over


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
    finishing: int | None = None
    stale: dict[str, Any] | None = None
    foreign: list[tuple[str, str]] = []
    unremovable: list[Unremovable] = []
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
                holder_info = _json(value)
            elif key == "lockage":
                age = _int(value)
            elif key == "lockfinishing":
                finishing = _int(value)
            elif key == "lockstale":
                stale = _json(value)
            elif key == "foreign":
                kind, _, name = value.partition("\t")
                foreign.append((kind.strip(), name))
            elif key == "unremovable":
                release, owner, path = (value.split("\t", 2) + ["", ""])[:3]
                unremovable.append(Unremovable(release.strip(), owner, path))
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
        lock_holder=LockHolder(holder_info or {}, age, finishing) if held else None,
        raw_current=current,
        manifest_digest=digest,
        baseline=baseline,
        foreign=tuple(foreign),
        unremovable=tuple(unremovable),
        stale_lock=stale,
        resources=parse_resources(resources, app_source, procs) if resources is not None else None,
    )


def _int(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


def _json(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if value.strip() else {}
    except ValueError:
        return {"raw": value.strip()}
    return parsed if isinstance(parsed, dict) else {"raw": value.strip()}
