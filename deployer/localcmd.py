"""Running a command on this machine (inventory scripts, secret commands) with a time limit.
The command gets its own process group, so a timeout or Ctrl-C kills its children too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STDERR_TAIL_LINES = 10


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes


class TimedOut(Exception):
    def __init__(self, timeout: float, stderr: bytes | None) -> None:
        super().__init__(f"did not finish within {timeout:g}s")
        self.timeout = timeout
        self.stderr = stderr or b""


def run_local(argv: Sequence[str], *, cwd: Path, timeout: float) -> Finished:
    """Run `argv` (no shell unless argv asks for one) with stdin closed. Raises TimedOut, or
    OSError when it cannot be started."""
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a timeout kills its children
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill(process)
            raise TimedOut(timeout, exc.stderr) from None
        except BaseException:
            _kill(process)
            raise
    return Finished(process.returncode, out, err)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def stderr_tail(stderr: bytes | None) -> str:
    """The last lines of stderr, each on its own indented line, for an error message."""
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()[-STDERR_TAIL_LINES:]
    return "".join(f"\n    {line}" for line in lines)
