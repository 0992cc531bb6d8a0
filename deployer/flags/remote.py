"""The read-only remote step of `flags.list`, built as data like every step in
`deployer.remote.scripts` (the push step lives there, `scripts.push_flags`), and the parsing
of what it prints. Pure: no connection.

It lives here rather than in scripts.py only because that module is edited by others at the
moment; moving it there changes nothing else.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from deployer.remote.scripts import MARK, Layout
from deployer.remote.shell import Script, q

FLAGS_FILE = "flags.json"  # in <deploy_to>/shared/


def flags_file(layout: Layout) -> str:
    return posixpath.join(layout.shared, FLAGS_FILE)


def read_flags(layout: Layout) -> Script:
    """Print the live release and the pushed flags file; changes nothing."""
    path = flags_file(layout)
    return Script(
        step="flags_read",
        lines=(
            f'echo {q(MARK + "current")} "$(readlink {q(layout.current)} || true)"',
            f"if [ -f {q(path)} ]; then echo {q(MARK + 'flags')}; cat {q(path)}; echo;"
            f" else echo {q(MARK + 'flags missing')}; fi",
            f"echo {q(MARK + 'end')}",
        ),
    )


@dataclass(frozen=True)
class Pushed:
    current: str | None  # release id
    text: str | None  # the flags file, None when the host has none


def parse_read(output: str) -> Pushed:
    current: str | None = None
    body: list[str] | None = None
    reading = False
    for line in output.splitlines():
        if line.startswith(MARK + "current"):
            target = line[len(MARK + "current") :].strip()
            current = posixpath.basename(target.rstrip("/")) or None
        elif line == MARK + "flags":
            body, reading = [], True
        elif line == MARK + "end":
            reading = False
        elif reading and body is not None:
            body.append(line)
    return Pushed(current, None if body is None else "\n".join(body))
