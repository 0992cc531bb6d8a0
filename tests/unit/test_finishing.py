"""The finish step's report: cleanup warnings parsed from the script's output and the words an
operator reads (host, path, owner, the fix), and the finish script's shape."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deployer.finishing import CleanupWarning, FinishReport, parse_cleanup
from deployer.remote import scripts

ROOT = "/srv/app"


def test_cleanup_lines_are_parsed_and_other_output_ignored() -> None:
    output = (
        "@@step cleanup\n"
        "@@cleanup /srv/app/releases/R1\troot\trm: cannot remove 'x': Permission denied\n"
        "some line a hook printed\n"
        "@@cleanup /srv/app/.deploy/staging/j\t\trm: cannot remove: Is a mount\n"
    )
    assert parse_cleanup("web1", output) == [
        CleanupWarning(
            "web1", "/srv/app/releases/R1", "root", "rm: cannot remove 'x': Permission denied"
        ),
        CleanupWarning("web1", "/srv/app/.deploy/staging/j", "", "rm: cannot remove: Is a mount"),
    ]


def test_a_root_owned_warning_names_host_path_owner_the_chown_and_the_setting() -> None:
    text = CleanupWarning("web2", "/srv/app/releases/R1", "root", "Permission denied").text(
        "production", "deploy"
    )
    assert text == (
        "web2: cleanup could not remove /srv/app/releases/R1 (files owned by root):"
        " Permission denied; the deploy itself succeeded. To fix: run"
        " `sudo chown -R deploy: /srv/app/releases/R1` on web2, or set `cleanup: {sudo: true}`"
        " in the playbook if the deploy user has passwordless sudo; the next deploy to"
        " production retries"
    )


def test_a_warning_without_a_foreign_owner_points_at_permissions() -> None:
    text = CleanupWarning("web1", "/x", "", "").text("staging", None)
    assert "unknown" in text and "check the path's permissions on the host" in text


def test_the_run_record_carries_warnings_only_when_there_are_some() -> None:
    assert FinishReport().record() == {}
    report = FinishReport(warnings=[CleanupWarning("web1", "/p", "root", "denied")])
    assert report.record() == {
        "cleanup_warnings": [{"host": "web1", "path": "/p", "owner": "root", "cause": "denied"}]
    }


def _run(script: scripts.Script, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script.render()], capture_output=True, text=True, cwd=tmp)


def test_finish_unlocks_and_leaves_foreign_entries_even_when_history_cannot_be_written(
    tmp_path: Path,
) -> None:
    layout = scripts.Layout(str(tmp_path))
    (tmp_path / ".deploy" / "lock").mkdir(parents=True)
    (tmp_path / ".deploy" / "lock" / "info").write_text('{"run_id": "abcdef012345"}\n')
    (tmp_path / ".deploy" / "history.jsonl").mkdir()  # appending to it fails
    (tmp_path / ".current.tmp").mkdir()
    result = _run(scripts.finish(layout, "abcdef012345", history=["{}"], prune=[]), tmp_path)
    assert result.returncode != 0  # the failure is reported ...
    assert not (tmp_path / ".deploy" / "lock").exists()  # ... and the lock released anyway
    assert (tmp_path / ".current.tmp").is_dir()


def test_finish_removes_only_links_shaped_like_ours(tmp_path: Path) -> None:
    layout = scripts.Layout(str(tmp_path))
    (tmp_path / "releases" / "R1").mkdir(parents=True)
    (tmp_path / ".deploy").mkdir()
    (tmp_path / ".current.0123456789ab").symlink_to(tmp_path / "releases" / "R1")
    (tmp_path / ".current.fedcba987654").symlink_to("/etc")  # our shape, not into releases/
    (tmp_path / ".current.old").symlink_to(tmp_path / "releases" / "R1")
    result = _run(scripts.finish(layout, "abcdef012345", history=[], prune=[]), tmp_path)
    assert result.returncode == 0, result.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".current"))
    assert left == [".current.fedcba987654", ".current.old"]
