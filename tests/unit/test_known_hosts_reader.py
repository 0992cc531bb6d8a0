"""Issue 18: known_hosts files are parsed once per run, not once per host (a fleet's file has
a line per host, so each connection scanned the whole file), and still judged exactly as
strictly: the same lines apply, in the same order, and a file that changes is read again."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.remote import known_hosts
from deployer.remote.known_hosts import (
    KnownHostsFiles,
    KnownHostsReader,
    Verdict,
    judge,
    parse_known_hosts,
)
from tests.unit.test_known_hosts import A, B, hashed, line

NAMES = ["[127.0.0.5]:2222", "[127.0.0.6]:2222", "web1", "WEB1", "db.example", "other"]


def tricky_file() -> str:
    return "\n".join(
        [
            "# comment",
            line("[127.0.0.5]:2222,web1", A),
            line("[127.0.0.6]:2222", B),
            line("[127.0.0.*]:2222,![127.0.0.6]:2222", B),
            line(hashed("web1"), B),
            line("Web1", A, "@revoked"),
            line("*.example", A),
            line("db.example", B, "@cert-authority"),
            "[127.0.0.5]:2222 ssh-ed25519 not-base64!",
            line("[127.0.0.5]:2222", B),
        ]
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_parsed_file_finds_the_same_lines_in_the_same_order(tmp_path: Path, name: str) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(tricky_file())
    files = KnownHostsFiles(path, (path,))
    assert files.keys_for(name, KnownHostsReader()) == parse_known_hosts(
        tricky_file(), str(path), name
    )


def test_forty_hosts_parse_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(line(f"[127.0.4.{i}]:2222", A) for i in range(1, 41)))
    parses: list[str] = []
    real = known_hosts._parse  # noqa: SLF001

    def counted(text: str, file: str):  # type: ignore[no-untyped-def]
        parses.append(file)
        return real(text, file)

    monkeypatch.setattr(known_hosts, "_parse", counted)
    reader = KnownHostsReader()
    files = KnownHostsFiles(path, (path, tmp_path / "absent"))
    for i in range(1, 41):
        (found,) = files.keys_for(f"[127.0.4.{i}]:2222", reader)
        assert found.where == f"{path}:{i}"
    assert parses.count(str(path)) == 1


def test_a_key_changed_in_the_file_during_the_run_is_judged_by_the_new_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(line("[127.0.0.5]:2222", A) + "\n")
    reader = KnownHostsReader()
    files = KnownHostsFiles(path, (path,))
    assert judge(files.keys_for("[127.0.0.5]:2222", reader), A.asbytes())[0] is Verdict.KNOWN
    # Same size, same inode, maybe the same mtime tick: only the text tells them apart.
    path.write_text(line("[127.0.0.5]:2222", B) + "\n")
    verdict, _ = judge(files.keys_for("[127.0.0.5]:2222", reader), A.asbytes())
    assert verdict is Verdict.CHANGED
    path.write_text(line("[127.0.0.5]:2222", A, "@revoked") + "\n")
    verdict, _ = judge(files.keys_for("[127.0.0.5]:2222", reader), A.asbytes())
    assert verdict is Verdict.REVOKED
    path.unlink()
    assert files.keys_for("[127.0.0.5]:2222", reader) == []
