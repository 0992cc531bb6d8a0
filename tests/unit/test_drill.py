"""The drill's remote command, as exact text, and what it parses (no host involved)."""

from deployer.remote.drill import parse_schemas, read_schemas
from deployer.remote.scripts import Layout


def test_read_schemas_is_read_only_and_quoted():
    script = read_schemas(Layout("/srv/my app"), ["20260101T000000Z-aaaaaaa", "B"])
    assert script.step == "schema"
    assert script.lines == (
        "printf '%s %s %s\\n' @@schema 20260101T000000Z-aaaaaaa"
        " \"$(head -n 1 '/srv/my app/releases/20260101T000000Z-aaaaaaa/SCHEMA' 2>/dev/null"
        ' || true)"',
        "printf '%s %s %s\\n' @@schema B"
        " \"$(head -n 1 '/srv/my app/releases/B/SCHEMA' 2>/dev/null || true)\"",
    )


def test_parse_schemas_reads_missing_as_empty():
    output = "noise\n@@schema A 3\n@@schema B \n"
    assert parse_schemas(output) == {"A": "3", "B": ""}
