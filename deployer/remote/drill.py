"""The remote commands only a rollback drill needs, built as data (`deployer.drill`): read the
schema each release says it needs. Reads only; never changes a host."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from deployer.remote.scripts import MARK, Layout
from deployer.remote.shell import Script, cmd

SCHEMA_FILE = "SCHEMA"  # first line: the database schema version the release's code needs


def read_schemas(layout: Layout, releases: Sequence[str]) -> Script:
    """`@@schema RELEASE VALUE` for each release; VALUE is empty when it has no SCHEMA file."""
    body = []
    for release in releases:
        path = posixpath.join(layout.release(release), SCHEMA_FILE)
        body.append(
            cmd("printf", "%s %s %s\\n", MARK + "schema", release)
            + ' "$('
            + cmd("head", "-n", "1", path)
            + ' 2>/dev/null || true)"'
        )
    return Script(step="schema", lines=tuple(body))


def parse_schemas(output: str) -> dict[str, str]:
    """release -> the schema it declares ('' when none)."""
    found = {}
    prefix = MARK + "schema "
    for line in output.splitlines():
        if line.startswith(prefix):
            release, _, value = line[len(prefix) :].partition(" ")
            found[release] = value.strip()
    return found
