"""What a host told us in its `prepare` step, parsed from the script's marked output. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from deployer.delta import Baseline, parse_baseline
from deployer.history import Record, parse_records
from deployer.release import RELEASE_ID_RE
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
    """Read the `@@<key> <value>` lines `scripts.prepare` prints. Every value a host's files
    decide is base64 (see `_decode`), so no file content can pose as a marker; only the first
    line of each key counts (`foreign` and `unremovable` are one line per entry), and
    anything malformed reads as absent, never as something else.
    """
    values: dict[str, str] = {}
    repeated: dict[str, list[str]] = {"foreign": [], "unremovable": []}
    procs: list[str] = []  # the app's processes (`deployer.remote.resources`), one a line
    for line in output.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK) :].partition(" ")
            if key in repeated:
                repeated[key].append(decode(value.strip()))
            elif key == "proc":
                procs.append(decode(value.strip()))
            elif key == "app":  # ours: the playbook's pidfile or unit
                values.setdefault(key, value)
            else:
                values.setdefault(key, value.strip())
    lock = values.get("lock", "")
    held = lock == "held"
    holder_info = _json(decode(values["lockinfo"])) if "lockinfo" in values else None
    stale = _json(decode(values["lockstale"])) if "lockstale" in values else None
    foreign = []
    for entry in repeated["foreign"]:
        kind, _, name = entry.partition("\t")
        foreign.append((kind.strip(), name))
    unremovable = []
    for entry in repeated["unremovable"]:
        release, owner, path = (entry.split("\t", 2) + ["", ""])[:3]
        unremovable.append(Unremovable(release.strip(), owner, path))
    current = decode(values.get("current", "")).strip()
    current_id = posixpath.basename(current.rstrip("/")) if current else None
    if current_id is not None and not is_safe_name(current_id):
        current_id = None
    releases = [r for r in decode(values.get("releases", "")).splitlines() if is_safe_name(r)]
    digest = values.get("manifest_digest", "").lower() or None
    if digest is not None and not _SHA256.fullmatch(digest):
        digest = None
    baseline = None
    if current_id and RELEASE_ID_RE.fullmatch(current_id) and digest and "manifest" in values:
        manifest = decode_bytes(values["manifest"])
        # The host's own digest must be the digest of the content it sent.
        if hashlib.sha256(manifest).hexdigest() == digest:
            baseline = parse_baseline(
                current_id,
                digest,
                manifest.decode("utf-8", "replace").splitlines(),
                decode(values.get("modes", "")).splitlines(),
            )
    return HostFacts(
        current=current_id,
        releases=tuple(sorted(releases)),
        history=tuple(parse_records(decode(values.get("history", "")).splitlines())),
        free_kb=_int(values.get("df")),
        lock_acquired=lock == "acquired",
        lock_holder=(
            LockHolder(
                holder_info or {}, _int(values.get("lockage")), _int(values.get("lockfinishing"))
            )
            if held
            else None
        ),
        raw_current=current,
        manifest_digest=digest,
        baseline=baseline,
        foreign=tuple(foreign),
        unremovable=tuple(unremovable),
        stale_lock=stale,
        resources=(
            parse_resources(
                decode(values["resources"]), values.get("app", "").strip() or None, procs
            )
            if "resources" in values
            else None
        ),
    )


_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_removed_lock(output: str) -> str:
    """What `scripts.unlock(run_id=None)` removed: the lock's info file (base64 on the host,
    as prepare sends it), "(no info)" when it had none, "" when there was no lock."""
    for line in output.splitlines():
        key, _, value = line.removeprefix(MARK).partition(" ")
        if line.startswith(MARK) and key == "lockinfo":
            return decode(value.strip()).strip() or "(no info)"
    return ""


def is_safe_name(name: str) -> bool:
    """A release directory name that is one path component: no `/`, no `.`/`..`, no hidden
    names, no control characters. (A delta base must also match the release-id pattern.)"""
    return (
        bool(name)
        and "/" not in name
        and not name.startswith(".")
        and name.isprintable()
        and len(name) <= 255
    )


def decode_bytes(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return b""


def decode(value: str) -> str:
    """A value a host sent base64-encoded (`scripts.section`); "" when it is not base64."""
    return decode_bytes(value).decode("utf-8", "replace")


def _int(value: str | None) -> int | None:
    try:
        return int(value.strip()) if value is not None else None
    except ValueError:
        return None


def _json(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if value.strip() else {}
    except ValueError:
        return {"raw": value.strip()}
    return parsed if isinstance(parsed, dict) else {"raw": value.strip()}
