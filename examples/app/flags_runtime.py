"""Feature flags inside a running application: `is_enabled("new-checkout", user_id)` answers
from the JSON file `invoke flags.set` pushes to `<deploy_to>/shared/flags.json`.

Standard library only, and no import from the deployer: applications ship this file as it is
(the sample app carries an identical copy, examples/app/flags_runtime.py, kept so by a unit
test). It must never raise into a request: a missing or unreadable file means every flag off.

    enabled: false        off for everyone (a kill switch: the allow-list too)
    allow: [ids]          on for these users (when enabled), whatever the percentage
    percent: N            on for users whose bucket is below N; without a user id only at 100
    (no percent)          on for everyone, with or without a user id

A user's bucket is sha256("<flag>:<user id>") mod 100: the same on every host and in every
process, so a user who is in at 10% stays in at 20% and gets the same answer everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV_VAR", "FlagsFile", "Rule", "bucket", "is_enabled"]

ENV_VAR = "DEPLOYER_FLAGS_FILE"  # the file's path, when `is_enabled` is given none


def bucket(name: str, user_id: object) -> int:
    """The user's place, 0-99, in the flag's rollout. Independent between flags."""
    digest = hashlib.sha256(f"{name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class Rule:
    """One flag as pushed: what `is_enabled` decides from."""

    enabled: bool = False
    percent: int = 100
    allow: frozenset[str] = frozenset()

    def decide(self, name: str, user_id: object = None) -> bool:
        if not self.enabled:
            return False
        user = None if user_id is None else str(user_id)
        if user is not None and user in self.allow:
            return True
        if self.percent >= 100:
            return True
        if user is None or self.percent <= 0:
            return False
        return bucket(name, user) < self.percent


def parse_rules(data: Any) -> dict[str, Rule]:
    """The rules of a pushed document `{"flags": {name: {enabled, percent, allow}}}`.
    A malformed entry is a flag that is off, never an exception."""
    flags = data.get("flags") if isinstance(data, dict) else None
    if not isinstance(flags, dict):
        return {}
    rules = {}
    for name, raw in flags.items():
        if not isinstance(raw, dict) or raw.get("enabled") is not True:
            rules[str(name)] = Rule()
            continue
        percent = raw.get("percent", 100)
        allow = raw.get("allow", [])
        if isinstance(percent, bool) or not isinstance(percent, int) or not isinstance(allow, list):
            rules[str(name)] = Rule()
            continue
        rules[str(name)] = Rule(True, max(0, min(100, percent)), frozenset(map(str, allow)))
    return rules


class FlagsFile:
    """One flags file, re-read when it changes. Each call costs one stat(2); the file is read
    again only when its inode, size or modification time differs (`flags.set` renames a new
    file into place, so every push is a new inode). Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        # (identity of the file read, its rules): replaced whole, so readers need no lock.
        self._state: tuple[tuple[int, ...] | None, Mapping[str, Rule]] = (None, {})

    @staticmethod
    def _identity(st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def rules(self) -> Mapping[str, Rule]:
        try:
            identity: tuple[int, ...] | None = self._identity(os.stat(self.path))
        except OSError:
            identity = None
        seen, rules = self._state
        if identity == seen:
            return rules
        with self._lock:
            if identity is None:
                self._state = (None, {})  # gone: every flag off
                return {}
            try:
                with open(self.path, "rb") as f:
                    # The identity of what was read, not of what was stat-ed a moment ago.
                    read_identity = self._identity(os.fstat(f.fileno()))
                    data = json.loads(f.read())
            except (OSError, ValueError):
                # A file being written in place by hand: keep the last good rules until it
                # changes again. (Pushed files are renamed into place whole.)
                self._state = (identity, self._state[1])
                return self._state[1]
            rules = parse_rules(data)
            self._state = (read_identity, rules)
            return rules

    def is_enabled(self, name: str, user_id: object = None) -> bool:
        rule = self.rules().get(name)
        return rule is not None and rule.decide(name, user_id)


_files: dict[str, FlagsFile] = {}
_files_lock = threading.Lock()


def is_enabled(
    name: str, user_id: object = None, *, path: str | os.PathLike[str] | None = None
) -> bool:
    """Whether flag `name` is on for `user_id` (or for an anonymous caller). Reads `path`, else
    the file named by $DEPLOYER_FLAGS_FILE; no file, or a flag it does not define: False."""
    where = os.fspath(path) if path is not None else os.environ.get(ENV_VAR)
    if not where:
        return False
    flags = _files.get(where)
    if flags is None:
        with _files_lock:
            flags = _files.setdefault(where, FlagsFile(where))
    return flags.is_enabled(name, user_id)
