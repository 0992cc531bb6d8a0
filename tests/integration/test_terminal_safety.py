"""Issue 14, section 3, through the real CLI: what a host prints (here, a failing restart
command's output) reaches the operator's terminal with its control characters escaped."""

from __future__ import annotations

from pathlib import Path

from deployer.sandbox import Fleet
from tests.integration.helpers import make_project


def test_escape_sequences_in_host_output_are_shown_escaped(
    clean_fleet: Fleet, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project", clean_fleet, hosts=["web1"])
    # Retitle the terminal, clear the screen, then claim success on a fresh line.
    project.playbook(restart=r"printf '\033]0;pwned\007\033[2J\rdeploy finished\n'; exit 1")
    out = project.invoke("deploy", "--env", "test")
    assert out.returncode == 1, out.stdout + out.stderr
    shown = out.stdout + out.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in shown and "deploy finished" in shown
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
