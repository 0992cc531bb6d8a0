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
from deployer.remote.scripts import MARK


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


def parse_facts(output: str) -> HostFacts:
    """Read the `@@<key> <value>` lines `scripts.prepare` prints. Every value a host's files
    decide is base64 (see `_decode`), so no file content can pose as a marker; only the first
    line of each key counts, and anything malformed reads as absent, never as something else.
    """
    values: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK) :].partition(" ")
            values.setdefault(key, value.strip())
    lock = values.get("lock", "")
    held = lock == "held"
    holder_info: dict[str, Any] | None = None
    if "lockinfo" in values:
        text = _decode(values["lockinfo"])
        try:
            holder_info = json.loads(text) if text.strip() else {}
        except ValueError:
            holder_info = {"raw": text.strip()}
        if not isinstance(holder_info, dict):
            holder_info = {"raw": text.strip()}
    current = _decode(values.get("current", "")).strip()
    current_id = posixpath.basename(current.rstrip("/")) if current else None
    if current_id is not None and not is_safe_name(current_id):
        current_id = None
    releases = [r for r in _decode(values.get("releases", "")).splitlines() if is_safe_name(r)]
    digest = values.get("manifest_digest", "").lower() or None
    if digest is not None and not _SHA256.fullmatch(digest):
        digest = None
    baseline = None
    if current_id and RELEASE_ID_RE.fullmatch(current_id) and digest and "manifest" in values:
        manifest = _decode_bytes(values["manifest"])
        # The host's own digest must be the digest of the content it sent.
        if hashlib.sha256(manifest).hexdigest() == digest:
            baseline = parse_baseline(
                current_id,
                digest,
                manifest.decode("utf-8", "replace").splitlines(),
                _decode(values.get("modes", "")).splitlines(),
            )
    return HostFacts(
        current=current_id,
        releases=tuple(sorted(releases)),
        history=tuple(parse_records(_decode(values.get("history", "")).splitlines())),
        free_kb=_int(values.get("df")),
        lock_acquired=lock == "acquired",
        lock_holder=LockHolder(holder_info or {}, _int(values.get("lockage"))) if held else None,
        raw_current=current,
        manifest_digest=digest,
        baseline=baseline,
    )


_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def _decode_bytes(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return b""


def _decode(value: str) -> str:
    return _decode_bytes(value).decode("utf-8", "replace")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
