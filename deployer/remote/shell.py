"""Shell building blocks: every remote command is assembled here from parts, each part quoted
when rendered. Nothing else in the package writes shell text by hand.

Never put a secret into a `Script`: its text travels on the remote command line. Secrets
travel in `Script.stdin` (see `deployer.remote.scripts`).
"""

from __future__ import annotations

import base64
import gzip
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Raw:
    """Shell text inserted verbatim: operators, redirections, or a user's own command from the
    playbook (which is shell by definition)."""

    text: str


Part = str | int | Raw


def cmd(*parts: Part) -> str:
    """One shell command from parts; strings and ints are quoted, `Raw` parts are not."""
    out = []
    for part in parts:
        if isinstance(part, Raw):
            out.append(part.text)
        else:
            out.append(shlex.quote(str(part)))
    return " ".join(out)


def q(value: str | int) -> str:
    """Quote one value for the shell."""
    return shlex.quote(str(value))


@dataclass(frozen=True)
class Stdin:
    """Bytes streamed to the remote script's standard input, as consecutive segments.

    Each segment is a local file path (streamed, never loaded whole) or in-memory bytes.
    The script reads each with `head -c <size>`, so sizes must be exact.
    """

    segments: tuple[Path | bytes, ...] = ()

    @property
    def size(self) -> int:
        return sum(_segment_size(s) for s in self.segments)


@dataclass(frozen=True)
class Script:
    """A remote step: a bash script run in one SSH exec session, with optional stdin.

    `step` names the phase for events and errors. The script prints `@@step <name>` markers
    when it moves between sub-steps so a failure can be pinned to the sub-step.
    """

    step: str
    lines: tuple[str, ...]
    stdin: Stdin = field(default_factory=Stdin)

    def render(self) -> str:
        return "\n".join(("set -eu", *self.lines)) + "\n"

    def command_line(self) -> str:
        """What the SSH exec request carries: the script as one quoted argument to bash, or,
        when that saves at least `COMPRESS_SAVING` bytes, gzip'd (see `compressed`)."""
        text = self.render()
        plain = cmd("bash", "-c", text)
        packed = compressed(text)
        return packed if len(packed) + COMPRESS_SAVING <= len(plain) else plain


# Our scripts repeat their long paths many times: gzip shrinks the big ones (prepare, stage) to
# about a third, most of what a store-mode deploy sends each host besides the handshake
# (issue 18). Unpacking costs the host three processes, so small scripts (the switch on every
# batch's critical path, hooks) travel as they are.
COMPRESS_SAVING = 1024


def compressed(script: str) -> str:
    """A command line that runs `script` exactly as `bash -c <script>` would, carried as the
    base64 of its gzip. The login shell parses it as it parses the plain form: `bash -c` and
    one single-quoted argument (the base64 alphabet needs no quoting inside it). A host that
    cannot unpack it runs nothing: `gzip -dc` fails on empty or truncated input, and the
    script's bash is only started when it succeeded. Command substitution drops the script's
    trailing newline, which bash does not need."""
    packed = base64.b64encode(gzip.compress(script.encode(), mtime=0)).decode()
    unpack = cmd("echo", packed, Raw("|"), "base64", "-d", Raw("|"), "gzip", "-dc")
    return cmd("bash", "-c", f's=$({unpack}) && exec bash -c "$s"')


def lines(*groups: str | Iterable[str]) -> tuple[str, ...]:
    """Flatten strings and iterables of strings into script lines."""
    out: list[str] = []
    for group in groups:
        if isinstance(group, str):
            out.append(group)
        else:
            out.extend(group)
    return tuple(out)


def _segment_size(segment: Path | bytes) -> int:
    if isinstance(segment, bytes):
        return len(segment)
    return segment.stat().st_size
