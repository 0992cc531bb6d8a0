"""What a person sees (issue 7): at a real terminal (a pty) the deploy draws its per-host rows
in place; in a pipe, as in CI logs, the same deploy writes plain lines with no escape codes."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest
import yaml

from deployer.sandbox import Fleet
from tests.integration.helpers import HOSTS, REPO, Project, make_project

CURSOR_UP = re.compile(r"\x1b\[\d+A")


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", clean_fleet)


def at_a_terminal(project: Project, *args: str) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pty, as in a terminal window."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # lines, cols
    invoke = Path(sys.executable).with_name("invoke")
    env = {**os.environ, "TERM": "xterm"}
    for name in ("NO_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [str(invoke), *args],
        cwd=project.root,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer has closed the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_live_view_at_a_terminal_and_plain_lines_in_a_pipe(project: Project) -> None:
    (project.app / "assets.bin").write_bytes(os.urandom(3 << 20))  # an upload worth showing
    code, screen = at_a_terminal(project, "deploy", "--env", "test")
    assert code == 0, screen
    release = project.current("web1")
    assert CURSOR_UP.search(screen), "rows were never redrawn in place"
    for host in HOSTS:  # a row per host, its step and state
        assert re.search(rf"{host}\s+stage\s+\S*running", screen), f"no stage row: {host}"
        assert re.search(rf"{host}\s+health\s+\S*healthy\S* after", screen), host
        # 3 MB of assets and the sample app (with its vendored prometheus_client)
        assert re.search(rf"{host}\s+stage\s+\S*ok\S* [\d.]+s \(3\.\d MB sent\)", screen), host
    assert "preflight checklist:" in screen and "batch 3/3: healthy" in screen  # they stay
    release = project.current("web1")
    assert "\x1b[32mdeploy finished\x1b[0m in" in screen  # coloured: NO_COLOR is not set
    assert screen.count(f"{release}\r\n") >= len(HOSTS)  # the summary, a line per host

    (project.app / "VERSION_NOTE").write_text("second\n")
    piped = project.invoke("deploy", "--env", "test")
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stdout + piped.stderr
    assert "deploy finished in" in piped.stdout + piped.stderr


def test_the_ci_example_summary_reads_a_real_json_deploy(project: Project, tmp_path: Path) -> None:
    """docs/ci-deploy-example.yml turns `--format json` into the job summary: run its script
    on the events of a real deploy."""
    workflow = yaml.safe_load((REPO / "docs" / "ci-deploy-example.yml").read_text())
    step = next(s for s in workflow["jobs"]["deploy"]["steps"] if s.get("name") == "deploy summary")
    script = step["run"].split("<<'PY'", 1)[1].split("\n", 1)[1].rsplit("PY", 1)[0]

    out = project.invoke("deploy", "--env", "test", "--format", "json")
    assert out.returncode == 0, out.stderr
    (project.root / "deploy-events.jsonl").write_text(out.stdout)
    summary = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    release = project.current("web1")
    assert summary.startswith("### deploy succeeded in ")
    for host in HOSTS:
        assert f"| {host} | {release} |" in summary
