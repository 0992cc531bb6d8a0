"""The peers' app settings come from our generated playbook (benchmarks/peer_settings.py):
what Ansible's group_vars and pyinfra's group_data get, and keys the peers cannot follow."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import yaml

from benchmarks.peer_settings import app_settings, write_ansible_vars, write_pyinfra_data
from benchmarks.projects import Host, write_projects


@pytest.fixture
def our_playbook(tmp_path: Path) -> Path:
    key, known_hosts = tmp_path / "key", tmp_path / "known_hosts"
    projects = write_projects(
        tmp_path / "work", [Host("bench01", "127.0.9.1")], [1], key, known_hosts
    )
    return projects.ours / "playbooks" / "deploy.yml"


def test_settings_follow_our_playbook(our_playbook: Path) -> None:
    settings = app_settings(our_playbook)
    book = yaml.safe_load(our_playbook.read_text())
    assert settings["deploy_to"] == book["deploy_to"]
    assert settings["shared_dirs"] == book["shared"]["dirs"]
    assert settings["restart_command"] == book["restart"]
    assert settings["health_url"] == book["health"]["http"]["url"]
    assert settings["health_expect_version"] is True
    assert settings["config_templates"] == [
        {"src": t["src"], "dest": t["dest"], "mode": t["mode"]} for t in book["templates"]
    ]
    assert settings["app_vars"] == book["vars"]
    assert settings["migrate_command"] is None


def test_written_where_each_peer_reads_them(our_playbook: Path, tmp_path: Path) -> None:
    settings = app_settings(our_playbook)
    ansible = yaml.safe_load(write_ansible_vars(settings, tmp_path / "ansible").read_text())
    assert ansible["restart_command"] == settings["restart_command"]
    assert ansible["app_port"] == settings["app_vars"]["app_port"]  # our vars, top level
    pyinfra = runpy.run_path(str(write_pyinfra_data(settings, tmp_path / "pyinfra")))
    assert {k: pyinfra[k] for k in settings} == settings


def test_a_key_the_peers_cannot_follow_is_an_error(our_playbook: Path) -> None:
    book = yaml.safe_load(our_playbook.read_text())
    book["shared"]["files"] = [".env"]
    book["hooks"] = {"after_switch": [{"command": "true"}]}
    our_playbook.write_text(yaml.safe_dump(book))
    with pytest.raises(ValueError, match="hooks.*shared.files|shared.files.*hooks"):
        app_settings(our_playbook)
