"""Which host keys are trusted, read as OpenSSH reads them: every UserKnownHostsFile and
GlobalKnownHostsFile (their defaults included), hashed names, wildcard patterns and `@revoked`.

Judging a presented key is pure (`judge`). A key that matches no line while some line pins a
key for the host is a changed key, in whichever file that line is; a revoked key is refused
even where another line trusts it. Only the first user file is ever written, by the caller.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import paramiko

from deployer.errors import HostKeyError

__all__ = [
    "GLOBAL_DEFAULTS",
    "USER_DEFAULTS",
    "HostKeyPolicy",
    "KnownHostsFiles",
    "KnownHostsReader",
    "KnownKey",
    "Verdict",
    "disabled_algorithms",
    "host_key_name",
    "fingerprint",
    "judge",
    "parse_known_hosts",
]

USER_DEFAULTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_DEFAULTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256")
# The server host key algorithms a client may be offered (paramiko's, and older ones).
_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    *_RSA_ALGORITHMS,
    "ssh-rsa",
    "ssh-dss",
)


@dataclass(frozen=True)
class KnownKey:
    """One known_hosts line that applies to the host being reached."""

    keytype: str
    blob: bytes  # the key as the server sends it
    where: str  # file:line
    revoked: bool = False


class Verdict(Enum):
    KNOWN = "known"  # a line trusts this very key
    UNKNOWN = "unknown"  # no line names a key for this host
    CHANGED = "changed"  # lines pin other keys for this host
    REVOKED = "revoked"  # a @revoked line names this key


@dataclass(frozen=True)
class KnownHostsFiles:
    """The files consulted for one host, in order, and the one accepted keys are added to."""

    write: Path
    read: tuple[Path, ...]

    @classmethod
    def for_host(
        cls, inventory_file: str | None, ssh_config: Mapping[str, object]
    ) -> KnownHostsFiles:
        """The inventory's `ssh_known_hosts_file` (written and read first), then every
        UserKnownHostsFile and GlobalKnownHostsFile as ~/.ssh/config sets them, or OpenSSH's
        defaults. Accepted keys go to the inventory's file, else the first user file."""
        user = _config_files(ssh_config.get("userknownhostsfile"), USER_DEFAULTS)
        system = _config_files(ssh_config.get("globalknownhostsfile"), GLOBAL_DEFAULTS)
        first = [_path(inventory_file)] if inventory_file else []
        read = tuple(dict.fromkeys([*first, *user, *system]))  # in order, once each
        write = first[0] if first else (user[0] if user else _path(USER_DEFAULTS[0]))
        return cls(write, read)

    def keys_for(self, name: str, reader: KnownHostsReader | None = None) -> list[KnownKey]:
        """Every line of every readable file that applies to `name` (see host_key_name).
        `reader` keeps each file parsed between hosts (a fresh one reads them now)."""
        reader = reader or KnownHostsReader()
        found: list[KnownKey] = []
        for path in self.read:
            found.extend(reader.parsed(path).keys_for(name))
        return found

    def describe(self) -> str:
        return ", ".join(str(path) for path in self.read)


def host_key_name(hostname: str, port: int) -> str:
    """How known_hosts names a host: `host` on port 22, `[host]:port` elsewhere."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def parse_known_hosts(text: str, file: str, name: str) -> list[KnownKey]:
    """The lines of one file that apply to `name`. Malformed lines and `@cert-authority`
    lines (host certificates are not supported) are skipped, as OpenSSH skips bad lines."""
    return [key for patterns, key in _parse(text, file) if _matches(patterns, name)]


def _parse(text: str, file: str) -> Iterator[tuple[str, KnownKey]]:
    """Every usable line of a file: its host patterns and its key."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            if marker not in ("@revoked", "@cert-authority"):
                continue
        fields = line.split()
        if marker == "@cert-authority" or len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        yield fields[0], KnownKey(fields[1], blob, f"{file}:{number}", marker == "@revoked")


class ParsedFile:
    """One known_hosts file, parsed: lines naming hosts literally are found by name, the
    others (wildcards, `!` negation, hashed names) are matched one by one, as before. A
    fleet's file has a line per host: looking each host up by scanning it cost every
    connection the whole file."""

    def __init__(self, lines: Iterable[tuple[str, KnownKey]]) -> None:
        self._literal: dict[str, list[tuple[int, KnownKey]]] = {}
        self._patterned: list[tuple[int, str, KnownKey]] = []
        for index, (patterns, key) in enumerate(lines):
            names = patterns.split(",")
            if any(n.startswith(("!", "|")) or "*" in n or "?" in n for n in names):
                self._patterned.append((index, patterns, key))
                continue
            for name in dict.fromkeys(n.lower() for n in names):
                self._literal.setdefault(name, []).append((index, key))

    def keys_for(self, name: str) -> list[KnownKey]:
        """The lines that apply to `name`, in file order (what parse_known_hosts finds)."""
        found = list(self._literal.get(name.lower(), ()))
        found += [(i, key) for i, patterns, key in self._patterned if _matches(patterns, name)]
        return [key for _, key in sorted(found, key=lambda item: item[0])]


class KnownHostsReader:
    """Parses each known_hosts file once per run: every connection still reads the file, and
    the file is parsed again whenever its text changed (a key accepted with
    --accept-new-host-keys, an edit during the run), so every connection is judged against
    the file exactly as it is when the connection is made."""

    def __init__(self) -> None:
        self._files: dict[Path, tuple[str, ParsedFile]] = {}
        self._lock = threading.Lock()

    def parsed(self, path: Path) -> ParsedFile:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:  # absent or unreadable, as OpenSSH treats it
            text = ""
        with self._lock:
            kept = self._files.get(path)
            if kept is None or kept[0] != text:
                kept = (text, ParsedFile(_parse(text, str(path))))
                self._files[path] = kept
            return kept[1]


def judge(known: Iterable[KnownKey], blob: bytes) -> tuple[Verdict, KnownKey | None]:
    """What the known lines say of a presented key, and the line that says it."""
    known = list(known)
    for entry in known:
        if entry.revoked and entry.blob == blob:
            return Verdict.REVOKED, entry
    trusted = [entry for entry in known if not entry.revoked]
    for entry in trusted:
        if entry.blob == blob:
            return Verdict.KNOWN, entry
    if trusted:
        return Verdict.CHANGED, trusted[0]
    return Verdict.UNKNOWN, None


def disabled_algorithms(known: Iterable[KnownKey]) -> list[str]:
    """The host key algorithms not to offer: those of no type known for the host (OpenSSH
    prefers the known types; we insist, so a host cannot present a type nobody pinned and be
    judged unknown). Empty when nothing is known, or nothing known is a type we speak."""
    types = {entry.keytype for entry in known if not entry.revoked}
    wanted = types | ({*_RSA_ALGORITHMS} if "ssh-rsa" in types else set())
    if not wanted & set(_ALGORITHMS):
        return []
    return [algorithm for algorithm in _ALGORITHMS if algorithm not in wanted]


def fingerprint(blob: bytes) -> str:
    """OpenSSH-style SHA256 fingerprint of a key as the server sends it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Judges every presented key (the client is given no keys of its own, so paramiko asks
    here each time): known keys pass, changed and revoked keys are refused, unknown keys are
    refused with their fingerprint or, when explicitly allowed, recorded in `files.write`."""

    def __init__(
        self,
        name: str,
        files: KnownHostsFiles,
        known: list[KnownKey],
        *,
        accept_new: bool,
        lock: threading.Lock,
    ) -> None:
        self.name = name  # the inventory host, for errors
        self.files = files
        self.known = known
        self.accept_new = accept_new
        self.lock = lock

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        blob = key.asbytes()
        shown = f"{key.get_name()} {fingerprint(blob)}"
        verdict, line = judge(self.known, blob)
        if verdict is Verdict.KNOWN:
            return
        if verdict is Verdict.REVOKED:
            assert line is not None
            raise HostKeyError(
                self.name,
                f"REVOKED host key for {hostname} ({shown}): marked @revoked in {line.where}",
                hint="this key must never be trusted again: the host or its key is compromised;"
                " have the host rekeyed and verify its new fingerprint out of band",
            )
        if verdict is Verdict.CHANGED:
            assert line is not None
            raise HostKeyError(
                self.name,
                f"HOST KEY CHANGED for {hostname}: expected {line.keytype}"
                f" {fingerprint(line.blob)} ({line.where}), got {shown}",
                hint="if the host was rebuilt, remove its old line from that file and verify the"
                " new fingerprint; otherwise treat this as an attack (--accept-new-host-keys"
                " never replaces a known key)",
            )
        if not self.accept_new:
            raise HostKeyError(
                self.name,
                f"unknown host key for {hostname} ({shown}); not in {self.files.describe()}",
                hint="verify the fingerprint out of band, then re-run with --accept-new-host-keys",
            )
        self.known.append(KnownKey(key.get_name(), blob, str(self.files.write)))
        with self.lock:
            self.files.write.parent.mkdir(parents=True, exist_ok=True)
            with self.files.write.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _matches(patterns: str, name: str) -> bool:
    """OpenSSH's host matching: comma-separated patterns with `*` and `?`, a `!pattern`
    vetoes, `|1|salt|hash` is a hashed name."""
    matched = False
    for pattern in patterns.split(","):
        if pattern.startswith("|1|"):
            if _hashed_matches(pattern, name):
                matched = True
            continue
        negated = pattern.startswith("!")
        if _glob(pattern.lstrip("!")).fullmatch(name):
            if negated:
                return False
            matched = True
    return matched


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    # Only `*` and `?` are special: `[host]:port` is a literal, not a character class.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE)


def _hashed_matches(entry: str, name: str) -> bool:
    try:
        salt_b64, hash_b64 = entry[3:].split("|", 1)
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
    except (ValueError, binascii.Error):
        return False
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(digest, expected)


def _config_files(value: object, defaults: tuple[str, ...]) -> list[Path]:
    if value is None:
        return [_path(item) for item in defaults]
    items = value if isinstance(value, list) else str(value).split()
    if [str(item).lower() for item in items] == ["none"]:
        return []
    return [_path(str(item)) for item in items]


def _path(value: str) -> Path:
    return Path(os.path.expanduser(value))
