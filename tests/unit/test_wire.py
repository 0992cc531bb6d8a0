"""What a script costs on the wire (issue 18): big scripts travel gzip'd and base64'd on the
exec request and run exactly as the plain `bash -c <script>`; the templates' tar carries no
record padding. Each test runs the real command line in a local `sh` (standing in for the
login shell) and bash, and the real GNU tar: no Docker."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from deployer.remote import scripts
from deployer.remote.scripts import HostFiles, RenderedFile
from deployer.remote.shell import COMPRESS_SAVING, Raw, Script, cmd, compressed

L = scripts.Layout("/srv/app")
RID = "20261127T170000Z-abc1234"
HOSTILE = 'it\'s a "$(touch pwned)" `id` \\ ; & | * ? [x] ~ \n @@end\t'


def sh(command_line: str, cwd: Path, *, stdin: bytes = b"", env: dict[str, str] | None = None):
    return subprocess.run(
        [shutil.which("sh") or "sh", "-c", command_line],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=30,
    )


def big(*body: str) -> Script:
    """A script long enough to be sent compressed."""
    padding = tuple(cmd(":", f"padding line {n} /srv/app/releases/{RID}") for n in range(40))
    return Script("probe", (*padding, *body))


def test_a_big_script_runs_compressed_exactly_as_the_plain_one_with_its_stdin(tmp_path):
    script = big(
        cmd("printf", "[%s]\\n", HOSTILE, Raw('"$0" "$#"')),
        "# a comment with a quote ' in it, then an indented heredoc body",
        "cat <<'EOF'",
        "  indented $(not expanded) 'quote",
        "EOF",
        "head -c 5; echo; cat | wc -c",
        "echo done",
    )
    line = script.command_line()
    assert line.startswith("bash -c 's=$(echo ") and HOSTILE not in line
    assert line.count("'") == 2  # the login shell parses one single-quoted argument
    assert len(line) + COMPRESS_SAVING <= len(cmd("bash", "-c", script.render()))
    plain = sh(cmd("bash", "-c", script.render()), tmp_path, stdin=b"hello, the rest")
    packed = sh(line, tmp_path, stdin=b"hello, the rest")
    assert plain.returncode == packed.returncode == 0, packed.stderr
    assert packed.stdout == plain.stdout
    assert f"[{HOSTILE}]\n[bash]\n[0]\n".encode() in packed.stdout
    assert b"  indented $(not expanded) 'quote\nhello\n10\ndone\n" in packed.stdout
    assert not (tmp_path / "pwned").exists()


def test_the_exit_status_and_set_eu_are_the_scripts_own(tmp_path):
    script = big("echo before", "false", "echo never")
    done = sh(script.command_line(), tmp_path)
    assert done.returncode == 1 and done.stdout == b"before\n"
    done = sh(big("exit 75").command_line(), tmp_path)
    assert done.returncode == 75


def test_a_host_that_cannot_unpack_runs_nothing(tmp_path):
    # A host without gzip (or a payload cut short) must fail, not run an empty script.
    script = big(f"touch {tmp_path / 'ran'}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "base64"):  # no gzip
        os.symlink(shutil.which(tool), bin_dir / tool)  # type: ignore[arg-type]
    done = sh(script.command_line(), tmp_path, env={"PATH": str(bin_dir)})
    assert done.returncode != 0
    assert not (tmp_path / "ran").exists()
    cut = script.command_line().replace(" | base64 -d", " | head -c 40 | base64 -d")
    assert sh(cut, tmp_path).returncode != 0
    assert not (tmp_path / "ran").exists()


def test_small_scripts_travel_plain_so_the_host_starts_no_extra_process():
    switch = scripts.switch(L, RID, "r1", restart="./bin/restart", env={"RELEASE_ID": RID})
    assert switch.command_line() == cmd("bash", "-c", switch.render())


@pytest.mark.parametrize("hostile", [False, True])
def test_prepare_and_finish_on_the_wire_are_their_rendered_text(hostile):
    root = f"/srv/{HOSTILE}" if hostile else "/srv/app"
    layout = scripts.Layout(root)
    for script in (
        scripts.prepare(layout, lock_info='{"who": "' + HOSTILE + '"}', baseline=True),
        scripts.finish(layout, "r1", history=["{}"], prune=[RID, "b"], sudo=True),
    ):
        argv = shlex.split(script.command_line())
        assert argv[:2] == ["bash", "-c"] and len(argv) == 3
        text = argv[2].encode()
        if text.startswith(b"s=$("):  # decoded by the very pipeline the host runs
            unpack = argv[2].removeprefix("s=$(").removesuffix(') && exec bash -c "$s"')
            text = subprocess.run(["sh", "-c", unpack], capture_output=True, check=True).stdout
        assert text.decode() == script.render()
        assert subprocess.run(["bash", "-n", "-c", text], check=False).returncode == 0
    assert "base64 -d" in scripts.prepare(layout, lock_info=None).command_line()


def test_compressed_text_is_deterministic():
    assert compressed("echo hi\n" * 300) == compressed("echo hi\n" * 300)


def test_the_templates_tar_is_not_padded_to_a_10_kib_record(tmp_path):
    files = [
        RenderedFile("config/app.ini", 0o644, b"port = 8000\n"),
        RenderedFile("config/é café.txt", 0o600, b"secret\n" * 100),  # a PAX header
        RenderedFile(".env", 0o600, b"S=1\n", shared=True),
    ]
    packed = HostFiles.pack(files)
    assert len(packed.tar) % tarfile.BLOCKSIZE == 0 and len(packed.tar) < tarfile.RECORDSIZE
    assert packed.tar.endswith(bytes(2 * tarfile.BLOCKSIZE))  # the end-of-archive marker
    # The stage session's own extraction, on GNU tar, quietly.
    done = subprocess.run(
        ["tar", "-xf", "-", "-C", str(tmp_path), "--no-same-owner", "--no-same-permissions"],
        input=packed.tar,
        capture_output=True,
    )
    assert done.returncode == 0 and done.stderr == b""
    assert (tmp_path / "config/app.ini").read_bytes() == b"port = 8000\n"
    assert (tmp_path / "config/é café.txt").read_bytes() == b"secret\n" * 100
    assert not (tmp_path / ".env").exists()
