"""The per-host step loop (deployer/remote/session.py), run in a local bash exactly as sshd
runs it on a host: frames in on stdin, output and end markers out."""

from __future__ import annotations

import gzip
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from deployer.remote.session import _LOOP, SERVER, frame, go, parse_end, ready, small_stdin
from deployer.remote.shell import Script, Stdin

NONCES = [f"{n:032x}" for n in range(1, 10)]


def step(script: Script, stdin: bytes, nonce: str) -> bytes:
    """Everything the deploying machine sends for one step (the loop reads it in turn)."""
    return frame(script, nonce) + go(nonce, stdin)


def loop(frames: bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    # A session of its own, as sshd starts each exec session's command.
    return subprocess.run(
        ["bash", "-c", _LOOP],
        input=frames,
        capture_output=True,
        cwd=cwd,
        timeout=30,
        start_new_session=True,
    )


def steps(out: bytes, nonces: list[str]) -> list[tuple[int, str]]:
    """Split the loop's output into each step's (exit code, output), in order."""
    results = []
    for nonce in nonces:
        assert out.startswith(ready(nonce))
        out = out[len(ready(nonce)) :]
        marker = f"\n@@done {nonce} ".encode()
        cut = out.index(marker)
        end = out.index(b"\n", cut + len(marker)) + 1
        parsed = parse_end(out[:end], nonce)
        assert parsed is not None
        results.append((parsed[0], parsed[1].decode()))
        out = out[end:]
    assert out == b""
    return results


def test_each_step_runs_in_a_fresh_bash_with_exactly_its_own_stdin(tmp_path: Path) -> None:
    frames = b"".join(
        [
            # Ignores its stdin, leaves a variable, a directory and an option behind.
            step(
                Script("a", ("export LEFT=behind", "cd /", "set +e", "echo one")),
                b"x" * 5000,
                NONCES[0],
            ),
            # Reads exactly its 5 bytes, not the first step's leftovers nor the next frame.
            step(
                Script("b", ('echo "${LEFT:-unset} $(pwd) $(wc -c)"', "echo err >&2")),
                b"hello",
                NONCES[1],
            ),
            step(Script("c", ("false", "echo never")), b"", NONCES[2]),
            step(Script("d", ("exit 7",)), b"", NONCES[3]),
        ]
    )
    done = loop(frames, tmp_path)
    assert done.returncode == 0
    a, b, c, d = steps(done.stdout, NONCES[:4])
    assert a == (0, "one\n")
    assert b == (0, f"unset {tmp_path} 5\nerr\n")  # stderr in the output, in order
    assert c[0] == 1 and "never" not in c[1]  # `set -eu` holds in every step
    assert d == (7, "")


def test_a_step_that_signals_its_own_process_group_ends_itself_not_the_loop(
    tmp_path: Path,
) -> None:
    # `kill 0`, or a cleanup trap doing it, as it would in an exec session of its own.
    frames = step(Script("a", ("echo before", "kill 0", "echo after")), b"", NONCES[0])
    frames += step(Script("b", ("trap 'kill 0' EXIT", "echo trapped")), b"", NONCES[1])
    frames += step(Script("c", ("echo still here",)), b"", NONCES[2])
    done = loop(frames, tmp_path)
    assert done.returncode == 0 and done.stderr == b""
    a, b, c = steps(done.stdout, NONCES[:3])
    assert a == (143, "before\n")  # 128 + SIGTERM, its output kept
    assert b == (143, "trapped\n")
    assert c == (0, "still here\n")


def test_output_that_imitates_the_end_marker_does_not_end_the_step(tmp_path: Path) -> None:
    fake = f"@@done {NONCES[5]} 0"
    script = Script("a", (f"printf '\\n%s\\n' {shlex.quote(fake)}", "echo after", "exit 3"))
    done = loop(step(script, b"", NONCES[0]), tmp_path)
    assert parse_end(done.stdout, NONCES[5]) is None  # not the step's nonce
    assert steps(done.stdout, [NONCES[0]]) == [(3, f"\n{fake}\nafter\n")]


def test_a_frame_cut_short_runs_nothing_and_ends_the_loop(tmp_path: Path) -> None:
    # The deploying machine died while sending: the script arrives truncated, so the gzip
    # does not unpack and not even its first line runs.
    whole = frame(Script("a", ("touch ran", "echo done")), NONCES[0])
    done = loop(whole[:-5] + go(NONCES[0], b""), tmp_path)
    assert done.returncode == 65
    assert done.stdout == b"" and not (tmp_path / "ran").exists()


def test_nothing_runs_without_the_go_for_that_very_step(tmp_path: Path) -> None:
    script = Script("a", ("touch ran",))
    # The deploying machine gave up (a host that froze and woke late): the connection ends
    # after the script arrived. The loop said it was ready, and ran nothing.
    done = loop(frame(script, NONCES[0]), tmp_path)
    assert (done.returncode, done.stdout) == (0, ready(NONCES[0]))
    for wrong in (go(NONCES[1], b""), b"go " + NONCES[0].encode() + b" x\n", b"stop\n"):
        done = loop(frame(script, NONCES[0]) + wrong, tmp_path)
        assert (done.returncode, done.stdout) == (65, ready(NONCES[0]))
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "header",
    [b"not-a-nonce 3\n", b"\n", b"abc 1 ;touch x\n", b"0f -1\n"],
)
def test_a_header_the_loop_cannot_read_ends_it_before_anything_runs(
    tmp_path: Path, header: bytes
) -> None:
    script = gzip.compress(b"touch ran\n")
    done = loop(header + script + b"go 0f 0\n", tmp_path)
    assert done.returncode == 65 and not (tmp_path / "ran").exists()
    assert not (tmp_path / "x").exists()


def test_the_loop_ends_quietly_when_its_input_does(tmp_path: Path) -> None:
    assert loop(b"", tmp_path).returncode == 0


def test_the_server_command_line_is_the_loop_for_any_login_shell(tmp_path: Path) -> None:
    # sshd hands the command line to the user's login shell: POSIX sh must see bash -c LOOP.
    frames = step(Script("a", ("echo hi",)), b"", NONCES[0])
    done = subprocess.run(
        ["sh", "-c", SERVER], input=frames, capture_output=True, cwd=tmp_path, timeout=30
    )
    assert steps(done.stdout, [NONCES[0]]) == [(0, "hi\n")]


def test_stdin_travels_through_the_loop_only_when_small(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.write_bytes(os.urandom(1000))
    assert small_stdin(Script("a", (), Stdin((b"ab", archive)))) == b"ab" + archive.read_bytes()
    archive.write_bytes(b"\0" * (256 * 1024 + 1))
    assert small_stdin(Script("a", (), Stdin((archive,)))) is None
    assert small_stdin(Script("a", (), Stdin((tmp_path / "gone",)))) is None
