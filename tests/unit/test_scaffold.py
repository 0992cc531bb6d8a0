"""`shipfleet init` (deployer.scaffold) and the `shipfleet` program, without any host."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest

from deployer import __version__, api
from deployer.cli import program
from deployer.config.playbook import _TOP_KEYS
from deployer.scaffold import FILES, application_name, init_project
from deployer.scaffold.tasks import report

REPO = Path(__file__).resolve().parents[2]
WRITTEN = [dest for _, dest in FILES]


def test_init_writes_a_project_that_loads(tmp_path: Path) -> None:
    root = tmp_path / "Shop Front"
    root.mkdir()
    done = init_project(root)
    assert done.written == WRITTEN
    assert done.skipped == []
    assert done.gitignored == [".deploy-runs/", ".sandbox/"]
    for dest in WRITTEN:
        assert (root / dest).is_file(), dest
    loaded = api.load(api.Project(root), "staging")  # inventory, playbook, templates checked
    assert loaded.playbook.application == "shop-front"
    assert [h.name for h in loaded.hosts] == ["web1", "web2"]
    assert loaded.playbook.source.path == "app"


def test_init_never_overwrites_and_appends_to_gitignore_once(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "deploy.yml").write_text("mine\n")
    (tmp_path / ".gitignore").write_text("node_modules/\n.sandbox/")  # no final newline
    done = init_project(tmp_path)
    assert "playbooks/deploy.yml" in done.skipped
    assert "playbooks/deploy.yml" not in done.written
    assert (tmp_path / "playbooks" / "deploy.yml").read_text() == "mine\n"
    assert done.gitignored == [".deploy-runs/"]
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", ".sandbox/"]
    assert lines.count(".deploy-runs/") == 1 and lines.count(".sandbox/") == 1

    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = init_project(tmp_path)
    assert again.written == [] and again.gitignored == []
    assert sorted(again.skipped) == sorted([*WRITTEN, ".gitignore"])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_playbook_shows_every_key_of_the_reference(tmp_path: Path) -> None:
    """Every key of docs/configuration.md's playbook table appears in the scaffold's
    playbook, set or commented out, so a user never has to look one up to find it."""
    init_project(tmp_path)
    text = (tmp_path / "playbooks" / "deploy.yml").read_text()
    for key in _TOP_KEYS:
        assert re.search(rf"^(# )?{key}:", text, re.M), key
    docs = (REPO / "docs" / "configuration.md").read_text()
    table = docs[docs.index("## Playbook") : docs.index("### Hooks")]
    keys = re.findall(r"^\| `([^`]+)`", table, re.M)
    assert len(keys) > 30
    for key in keys:
        for part in re.split(r"[., ]+", key.replace("[]", "")):
            if part and not part.startswith("<"):
                assert re.search(rf"\b{re.escape(part)}:", text), (key, part)


def test_ci_workflow_is_the_documented_example(tmp_path: Path) -> None:
    init_project(tmp_path)
    written = (tmp_path / ".github" / "workflows" / "deploy.yml").read_text()
    assert written == (REPO / "docs" / "ci-deploy-example.yml").read_text()


@pytest.mark.parametrize(
    ("directory", "name"), [("my_app", "my_app"), ("Web Shop!", "web-shop"), ("---", "app")]
)
def test_application_name_from_directory(tmp_path: Path, directory: str, name: str) -> None:
    assert application_name(tmp_path / directory) == name


def test_report_names_the_next_three_commands(tmp_path: Path) -> None:
    text = report(init_project(tmp_path))
    commands = [line.split("#")[0].strip() for line in text.splitlines() if line.startswith("  ")]
    assert commands == [
        "shipfleet preflight --env staging --accept-new-host-keys",
        "shipfleet deploy --env staging --dry-run",
        "shipfleet deploy --env staging",
    ]
    assert "wrote inventories/staging.yml" in text


def test_version_is_single_sourced(capsys: pytest.CaptureFixture[str]) -> None:
    program.run(["shipfleet", "--version"], exit=False)
    assert capsys.readouterr().out == f"shipfleet {__version__}\n"
    assert importlib.metadata.version("shipfleet") == __version__


def test_program_prints_its_completion_script(capsys: pytest.CaptureFixture[str]) -> None:
    program.run(["shipfleet", "--print-completion-script", "bash"], exit=False)
    out = capsys.readouterr().out
    assert "complete -F" in out and "shipfleet" in out


def test_no_file_sends_users_to_the_other_deployer_distribution() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    offenders = [
        name.decode()
        for name in tracked
        if name
        and (REPO / name.decode()).is_file()
        and re.search(rb"pip install (-U )?deployer\b", (REPO / name.decode()).read_bytes())
    ]
    assert offenders == []
