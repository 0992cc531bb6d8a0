"""Issue 14, section 3: host keys are judged against every known_hosts line that applies, in
whichever file, as OpenSSH reads them (hashed names, wildcards, `!` negation, `@revoked`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import threading
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from deployer.errors import HostKeyError
from deployer.remote.known_hosts import (
    HostKeyPolicy,
    KnownHostsFiles,
    KnownKey,
    Verdict,
    disabled_algorithms,
    fingerprint,
    host_key_name,
    judge,
    parse_known_hosts,
)

NAME = "[127.0.0.5]:2222"


def ed25519() -> paramiko.PKey:
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


A, B = ed25519(), ed25519()


def line(hosts: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker} {hosts} {key.get_name()} {key.get_base64()}".strip()


def hashed(name: str) -> str:
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_host_key_name_is_bracketed_off_port_22() -> None:
    assert host_key_name("127.0.0.5", 22) == "127.0.0.5"
    assert host_key_name("127.0.0.5", 2222) == NAME


@pytest.mark.parametrize(
    ("hosts", "applies"),
    [
        (NAME, True),
        ("[127.0.0.5]:22", False),
        ("127.0.0.5", False),  # port 22's entry, not this one's
        ("other," + NAME, True),
        ("[127.0.0.*]:2222", True),  # brackets are literal, `*` is a wildcard
        ("[127.0.0.?]:2222", True),
        ("*", True),
        ("*,![127.0.0.5]:2222", False),
        (hashed(NAME), True),
        (hashed("[127.0.0.6]:2222"), False),
    ],
)
def test_which_lines_apply_to_a_host(hosts: str, applies: bool) -> None:
    found = parse_known_hosts(line(hosts, A) + "\n", "kh", NAME)
    assert bool(found) is applies


def test_comments_bad_lines_and_cert_authorities_are_skipped() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            f"{NAME} ssh-ed25519 not-base64!",
            f"{NAME} ssh-ed25519",
            line(NAME, A, "@cert-authority"),
            line(NAME, A, "@unknown"),
            line(NAME, B),
        ]
    )
    [entry] = parse_known_hosts(text, "kh", NAME)
    assert entry == KnownKey("ssh-ed25519", B.asbytes(), "kh:7")


def test_judge_known_unknown_changed_revoked() -> None:
    a = KnownKey("ssh-ed25519", A.asbytes(), "one:1")
    b = KnownKey("ssh-ed25519", B.asbytes(), "two:3")
    revoked_a = KnownKey("ssh-ed25519", A.asbytes(), "global:9", revoked=True)
    assert judge([], A.asbytes()) == (Verdict.UNKNOWN, None)
    assert judge([a], A.asbytes()) == (Verdict.KNOWN, a)
    assert judge([b], A.asbytes()) == (Verdict.CHANGED, b)  # pinned in another file
    assert judge([b, a], A.asbytes()) == (Verdict.KNOWN, a)  # as OpenSSH: any line trusts it
    assert judge([a, revoked_a], A.asbytes()) == (Verdict.REVOKED, revoked_a)  # revoked wins
    assert judge([revoked_a], B.asbytes()) == (Verdict.UNKNOWN, None)


def test_only_the_pinned_key_types_are_offered() -> None:
    assert disabled_algorithms([]) == []
    ed = [KnownKey("ssh-ed25519", A.asbytes(), "kh:1")]
    assert "ssh-ed25519" not in disabled_algorithms(ed)
    assert "rsa-sha2-512" in disabled_algorithms(ed)
    rsa = disabled_algorithms([KnownKey("ssh-rsa", b"x", "kh:1")])
    assert "rsa-sha2-256" not in rsa and "ssh-ed25519" in rsa
    assert disabled_algorithms([KnownKey("sk-ssh-ed25519@openssh.com", b"x", "kh:1")]) == []


def policy(tmp_path: Path, texts: dict[str, str], accept_new: bool) -> HostKeyPolicy:
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    files = KnownHostsFiles(tmp_path / "mine", tuple(tmp_path / name for name in texts))
    return HostKeyPolicy(
        "web1", files, files.keys_for(NAME), accept_new=accept_new, lock=threading.Lock()
    )


def test_a_key_pinned_in_a_second_file_is_not_replaced_by_accept_new(tmp_path: Path) -> None:
    """Written for issue 14: only the first file was read, so --accept-new-host-keys
    recorded a key that another known_hosts file contradicted."""
    check = policy(tmp_path, {"mine": "", "known_hosts2": line(NAME, B) + "\n"}, True)
    with pytest.raises(HostKeyError) as info:
        check.missing_host_key(paramiko.SSHClient(), NAME, A)
    message = str(info.value)
    assert (
        f"HOST KEY CHANGED for {NAME}: expected ssh-ed25519 {fingerprint(B.asbytes())}" in message
    )
    assert f"({tmp_path / 'known_hosts2'}:1), got ssh-ed25519 {fingerprint(A.asbytes())}" in message
    assert (tmp_path / "mine").read_text() == ""  # nothing recorded


def test_a_revoked_key_is_refused_even_where_another_file_trusts_it(tmp_path: Path) -> None:
    texts = {"mine": line(NAME, A) + "\n", "global": "# keys\n" + line("*", A, "@revoked") + "\n"}
    check = policy(tmp_path, texts, True)
    with pytest.raises(HostKeyError) as info:
        check.missing_host_key(paramiko.SSHClient(), NAME, A)
    assert f"REVOKED host key for {NAME}" in str(info.value)
    assert f"marked @revoked in {tmp_path / 'global'}:2" in str(info.value)


def test_unknown_keys_name_every_file_read_and_are_recorded_only_when_allowed(
    tmp_path: Path,
) -> None:
    with pytest.raises(HostKeyError) as info:
        policy(tmp_path, {"mine": "", "other": ""}, False).missing_host_key(
            paramiko.SSHClient(), NAME, A
        )
    assert f"not in {tmp_path / 'mine'}, {tmp_path / 'other'}" in str(info.value)
    policy(tmp_path, {"mine": "", "other": ""}, True).missing_host_key(
        paramiko.SSHClient(), NAME, A
    )
    assert (tmp_path / "mine").read_text() == line(NAME, A) + "\n"
    policy(tmp_path, {"mine": line(NAME, A) + "\n"}, False).missing_host_key(
        paramiko.SSHClient(), NAME, A
    )  # known now: passes
