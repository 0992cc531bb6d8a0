"""Issue 18: a run reads each private key file once, not once per host and key type (paramiko
tries a file as RSA, ECDSA, then Ed25519, reading it each time), and reads it again if it
changes. What paramiko does with what it read is unchanged."""

from __future__ import annotations

import builtins
import types
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from deployer.remote.keyfiles import KeyCachingClient, KeyFiles

TYPES = (paramiko.RSAKey, paramiko.ECDSAKey, paramiko.Ed25519Key)  # paramiko's order


def write_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
    )
    path.write_bytes(pem)


def client(keys: KeyFiles) -> KeyCachingClient:
    made = KeyCachingClient(keys)
    made._transport = types.SimpleNamespace(_log=lambda *args: None)  # noqa: SLF001
    return made


def try_like_paramiko(c: KeyCachingClient, path: Path) -> paramiko.PKey:
    """SSHClient._auth's loop over one key file: the first type that parses wins."""
    for klass in TYPES:
        try:
            return c._key_from_filepath(str(path), klass, None)  # noqa: SLF001
        except paramiko.SSHException:
            continue
    raise AssertionError("no key type parsed")


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = builtins.open

    def counted(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    return seen


def test_forty_connections_read_the_key_file_once_per_type(
    tmp_path: Path, opens: list[str]
) -> None:
    path = tmp_path / "id_ed25519"
    write_key(path)
    keys = KeyFiles()
    found = {try_like_paramiko(client(keys), path).get_fingerprint() for _ in range(40)}
    assert len(found) == 1
    assert opens.count(str(path)) == len(TYPES)  # was 3 x 40


def test_a_key_file_replaced_during_the_run_is_read_again(tmp_path: Path, opens: list[str]) -> None:
    path = tmp_path / "id_ed25519"
    write_key(path)
    keys = KeyFiles()
    first = try_like_paramiko(client(keys), path)
    write_key(path)
    second = try_like_paramiko(client(keys), path)
    assert first.get_fingerprint() != second.get_fingerprint()
    assert second == paramiko.Ed25519Key.from_private_key_file(str(path))


def test_an_absent_key_file_fails_each_time_as_paramiko_does(tmp_path: Path) -> None:
    keys = KeyFiles()
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            client(keys)._key_from_filepath(str(tmp_path / "absent"), paramiko.Ed25519Key, None)  # noqa: SLF001


def test_a_passphrase_protected_key_still_asks_for_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    private = Ed25519PrivateKey.generate()
    encrypted = BestAvailableEncryption(b"secret")
    path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, encrypted))
    keys = KeyFiles()
    for _ in range(2):
        with pytest.raises(paramiko.PasswordRequiredException):
            client(keys)._key_from_filepath(str(path), paramiko.Ed25519Key, None)  # noqa: SLF001
    unlocked = client(keys)._key_from_filepath(str(path), paramiko.Ed25519Key, "secret")  # noqa: SLF001
    assert (
        unlocked.asbytes()
        == paramiko.Ed25519Key.from_private_key_file(str(path), "secret").asbytes()
    )
