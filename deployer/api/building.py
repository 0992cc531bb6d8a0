"""Building the release a run deploys: from the playbook's source (a git ref or a directory),
or rebuilt exactly as the last unfinished deploy recorded it (`--resume`). Local only."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployer.api.project import Loaded
from deployer.errors import ConfigError, ReleaseError
from deployer.release import Release, build_release


def release_time() -> datetime | None:
    """The release time: SOURCE_DATE_EPOCH when set (reproducible builds), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), UTC)
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds, got {epoch!r}") from None


def build(
    loaded: Loaded, work_dir: Path, ref: str | None = None, now: datetime | None = None
) -> Release:
    source = loaded.playbook.source
    root = loaded.project.root
    if source.git_repo is not None:
        return build_release(
            git_repo=root / source.git_repo,
            ref=ref or source.ref or "HEAD",
            subdir=source.subdir,
            work_dir=work_dir,
            now=now or release_time(),
            keep_bytecode=source.keep_bytecode,
        )
    if ref is not None:
        raise ReleaseError(
            f"--ref {ref} given, but {loaded.playbook.path} deploys a directory"
            f" ({source.path}), not a git repository",
            hint="drop --ref, or set source: {git: ., ref: main} in the playbook",
        )
    assert source.path is not None
    return build_release(
        source_dir=root / source.path,
        work_dir=work_dir,
        now=now or release_time(),
        keep_bytecode=source.keep_bytecode,
    )


def resumable_run(loaded: Loaded) -> dict[str, Any]:
    """The last deploy of this environment, if it did not bring every host to its release
    (interrupted, killed, failed, or hosts skipped as unreachable)."""
    runs = []
    for path in loaded.project.runs.glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("env") == loaded.env and record.get("action") == "deploy":
            runs.append(record)
    hint = f"start a new one: invoke deploy --env {loaded.env}"
    if not runs:
        raise ConfigError(f"no recorded deploy of {loaded.env} to resume", hint=hint)
    last: dict[str, Any] = max(runs, key=lambda r: r.get("started") or 0)
    releases = last.get("releases") or {}
    everywhere = all(releases.get(h) == last.get("release") for h in last.get("hosts", {}))
    if last.get("ok") is True and everywhere:
        raise ConfigError(
            f"the last deploy of {loaded.env} ({last.get('release')}, run {last.get('run_id')})"
            " finished on every host: nothing to resume",
            hint=hint,
        )
    if not last.get("source") or last.get("built_at") is None:
        raise ConfigError(f"run {last.get('run_id')} did not record its source", hint=hint)
    return last


def rebuild(loaded: Loaded, work_dir: Path, run: dict[str, Any]) -> Release:
    source = str(run["source"])
    ref = None if source.startswith("dir:") else source
    release = build(loaded, work_dir, ref, now=datetime.fromtimestamp(int(run["built_at"]), UTC))
    if release.id != run.get("release"):
        raise ReleaseError(
            f"cannot rebuild {run.get('release')} of run {run.get('run_id')}: the source changed"
            f" since (it now builds {release.id})",
            hint=f"deploy afresh: invoke deploy --env {loaded.env}",
        )
    return release


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
