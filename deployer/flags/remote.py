"""The read-only remote step of `flags.list`, built as data like every step in
`deployer.remote.scripts` (the push step lives there, `scripts.push_flags`), and the parsing
of what it prints. Pure: no connection.

It lives here rather than in scripts.py only because that module is edited by others at the
moment; moving it there changes nothing else.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from deployer.facts import decode, is_safe_name
from deployer.remote.scripts import MARK, Layout, section
from deployer.remote.shell import Script, cmd, q

FLAGS_FILE = "flags.json"  # in <deploy_to>/shared/


def flags_file(layout: Layout) -> str:
    return posixpath.join(layout.shared, FLAGS_FILE)


def read_flags(layout: Layout) -> Script:
    """Print the live release and the pushed flags file; changes nothing. Both are the
    host's to decide, so both travel base64-encoded, as prepare's facts do."""
    path = flags_file(layout)
    return Script(
        step="flags_read",
        lines=(
            section("current", cmd("readlink", layout.current)),
            f"if [ -f {q(path)} ]; then {section('flags', cmd('cat', path))};"
            f" else echo {q(MARK + 'flags missing')}; fi",
            f"echo {q(MARK + 'end')}",
        ),
    )


@dataclass(frozen=True)
class Pushed:
    current: str | None  # release id
    text: str | None  # the flags file, None when the host has none


def parse_read(output: str) -> Pushed:
    values: dict[str, str] = {}
    for line in output.splitlines():
        if line == MARK + "flags missing":
            values.setdefault("flags", "")
            values.setdefault("missing", "")
        elif line.startswith(MARK):
            key, _, value = line[len(MARK) :].partition(" ")
            values.setdefault(key, value.strip())
    current = posixpath.basename(decode(values.get("current", "")).strip().rstrip("/"))
    text = decode(values["flags"]) if "flags" in values and "missing" not in values else None
    return Pushed(current if is_safe_name(current) else None, text)
