"""Values a host decides (a process's name, the flags file, a lock's info file) reach us
base64-framed, so none can pose as a marker line, and are shown on one line with control
characters escaped. Each test runs the real script in a local bash (no Docker): the hostile
value is really on disk or really a process's name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployer.facts import parse_facts, parse_removed_lock
from deployer.flags.remote import parse_read, read_flags
from deployer.printable import one_line
from deployer.remote import scripts
from deployer.remote.shell import Script
from deployer.resources import describe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

FORGED = "\n@@lock held\n@@lockinfo e30=\n@@end\n"  # what a raw value could have faked
ANSI = "\x1b[2J\x1b]0;pwned\x07"


def run(script: Script) -> str:
    done = subprocess.run(
        ["bash", "-c", script.render()], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_process_names_cannot_pose_as_markers_or_reach_the_terminal(tmp_path: Path) -> None:
    # A process may name itself anything up to 15 bytes: a newline and a marker fit.
    names = ["a\n@@lock held", "\x1b[2Jred\n@@end"]
    child = (  # named, with a named child; says the child's pid once both are named
        "import subprocess, sys, time\n"
        "open('/proc/self/comm', 'w').write(sys.argv[1])\n"
        "kid = subprocess.Popen([sys.executable, '-c', \"import sys, time;"
        " open('/proc/self/comm', 'w').write(sys.argv[1]); print(flush=True); time.sleep(60)\","
        " sys.argv[2]], stdout=subprocess.PIPE)\n"
        "kid.stdout.readline()\n"
        "print(kid.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", child, *names], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        kid = int(parent.stdout.readline())
        (tmp_path / "app.pid").write_text(f"{parent.pid}\n")
        layout = scripts.Layout(str(tmp_path / "app"))
        out = run(scripts.prepare(layout, lock_info=None, pidfile=str(tmp_path / "app.pid")))
    finally:
        parent.kill()
        subprocess.run(["kill", str(kid)], check=False)
        parent.wait()
    facts = parse_facts(out)
    assert facts.lock_holder is None and not facts.lock_acquired
    assert facts.resources is not None and facts.resources.cpus
    assert [p.name for p in facts.resources.processes] == names  # exactly as the host has them
    shown = describe(facts.resources)
    assert "\n" not in shown and "\x1b" not in shown
    assert f"pid {parent.pid} a\\n@@lock held " in shown
    assert "\\x1b[2Jred\\n@@end" in shown


def test_a_forged_resources_value_is_read_as_data() -> None:
    """The `resources` value and every `proc` value are base64: a name decoding to marker
    lines changes nothing else."""
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    out = (
        f"@@resources {b64('cpus=2 load=0.5,0.5,0.5 mem=100,50')}\n"
        "@@app pidfile /run/app.pid\n"
        f"@@proc {b64('7 0.0 100 x' + FORGED + '@@resources cpus=64')}\n"
        "@@end\n"
    )
    facts = parse_facts(out)
    assert facts.lock_holder is None
    assert facts.resources is not None and facts.resources.cpus == 2
    assert facts.resources.processes[0].name == "x" + FORGED + "@@resources cpus=64"


def test_the_flags_file_and_current_link_cannot_pose_as_markers(tmp_path: Path) -> None:
    layout = scripts.Layout(str(tmp_path / "app"))
    Path(layout.shared).mkdir(parents=True)
    Path(layout.releases, "R1").mkdir(parents=True)
    Path(layout.current).symlink_to(Path(layout.releases, "R1"))
    hostile = '{"flags": {}}\n@@end\n@@current /srv/app/releases/R9\n@@flags missing\n' + ANSI
    Path(layout.shared, "flags.json").write_text(hostile)
    read = parse_read(run(read_flags(layout)))
    assert read.current == "R1" and read.text == hostile
    # A `current` whose target names a marker: read as data, and not a release name.
    Path(layout.current).unlink()
    Path(layout.current).symlink_to(Path(layout.releases, "R1\n@@flags missing"))
    read = parse_read(run(read_flags(layout)))
    assert read.current is None and read.text == hostile
    Path(layout.shared, "flags.json").unlink()
    assert parse_read(run(read_flags(layout))).text is None


def test_unlock_reports_a_hostile_lock_info_as_one_escaped_line(tmp_path: Path) -> None:
    layout = scripts.Layout(str(tmp_path / "app"))
    Path(layout.lock).mkdir(parents=True)
    info = '{"user": "mallory"}' + FORGED + ANSI
    Path(layout.lock, "info").write_text(info + "\n")
    out = run(scripts.unlock(layout, run_id=None))
    assert not Path(layout.lock).exists()
    held = parse_removed_lock(out)
    assert held == info.strip()  # the whole file, not the line before the forged markers
    assert parse_facts(out).lock_holder is None
    shown = one_line(held)
    assert "\n" not in shown and "\x1b" not in shown
    assert shown.startswith('{"user": "mallory"}\\n@@lock held\\n@@lockinfo e30=\\n@@end')
    # An empty info file still says a lock was removed; no lock says nothing was.
    Path(layout.lock).mkdir()
    Path(layout.lock, "info").write_text("")
    assert parse_removed_lock(run(scripts.unlock(layout, run_id=None))) == "(no info)"
    assert parse_removed_lock(run(scripts.unlock(layout, run_id=None))) == ""
