"""Private key files read once per run, not once per host. Must never change which keys are
offered, in what order, or what happens when one cannot be read: paramiko's own search (the
inventory's and the config's key files, then ssh-agent, then ~/.ssh/id_*) runs unchanged,
and only the reading of a file is remembered.

paramiko tries each key file as RSA, then ECDSA, then Ed25519, reading and parsing it each
time, for every connection: an Ed25519 key was read three times per host. A key file that
changes during the run (same path, other inode, size or mtime) is read again."""

from __future__ import annotations

import os
import threading
from typing import Any

import paramiko

CERT = "-cert.pub"


class KeyFiles:
    """What reading a key file as one key type gave (a key, or the SSHException paramiko
    raised), by the file's identity. Shared by every connection of a transport."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[Any, ...], paramiko.PKey | paramiko.SSHException] = {}
        self._lock = threading.Lock()

    def load(
        self,
        client: paramiko.SSHClient,
        filename: str,
        klass: type[paramiko.PKey],
        password: str | None,
    ) -> paramiko.PKey:
        # paramiko's naming: the key, and the certificate loaded with it when there is one.
        key, cert = (
            (filename.removesuffix(CERT), filename)
            if filename.endswith(CERT)
            else (filename, filename + CERT)
        )
        identity = (filename, klass, password, _stat(key), _stat(cert))
        with self._lock:
            found = self._loaded.get(identity)
            if found is None:
                try:
                    found = _read(client, filename, klass, password)
                # An absent or unreadable file raises OSError as before, and is not kept.
                except paramiko.SSHException as exc:  # not this type, or needs a passphrase
                    found = exc
                self._loaded[identity] = found
        if isinstance(found, paramiko.SSHException):
            raise found
        return found


class KeyCachingClient(paramiko.SSHClient):
    """paramiko's client, reading key files through a run's KeyFiles."""

    def __init__(self, keys: KeyFiles) -> None:
        super().__init__()
        self._keys = keys

    def _key_from_filepath(
        self, filename: str, klass: type[paramiko.PKey], password: str | None
    ) -> paramiko.PKey:
        return self._keys.load(self, filename, klass, password)


def _read(
    client: paramiko.SSHClient, filename: str, klass: type[paramiko.PKey], password: str | None
) -> paramiko.PKey:
    # paramiko's own reading, certificate (`<key>-cert.pub`) included.
    return paramiko.SSHClient._key_from_filepath(client, filename, klass, password)  # type: ignore[attr-defined,no-any-return]


def _stat(path: str) -> tuple[int, ...]:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return st.st_ino, st.st_size, st.st_mtime_ns
