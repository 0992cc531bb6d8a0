"""The prepare step: create the layout, take the lock, report the host's facts. Pure."""

from __future__ import annotations

import posixpath

from deployer.remote.scripts.common import (
    EXIT_LOCK_HELD,
    EXIT_UNSAFE_LAYOUT,
    FREE_KB,
    MARK,
    Layout,
)
from deployer.remote.shell import Script, cmd, lines, q


def prepare(
    layout: Layout,
    *,
    lock_info: str | None,
    baseline: bool = False,
    takeover: str | None = None,
    history_lines: int = 500,
) -> Script:
    """Create the layout, take the lock (when `lock_info` is given) and report the host's facts.
    With `baseline`, also the current release's MANIFEST and file modes, so the next upload
    can send only what changed (see `deployer.delta`).

    Output: one `@@<key> <value>` line per fact, parsed by `deployer.facts.parse_facts`.
    Whatever the host's files hold (its MANIFEST, history, lock info, release names, the
    `current` link) travels base64-encoded with its stderr dropped, so no file content can
    ever be read as a marker line; the other values are numbers and digests we check.
    """
    manifest = posixpath.join(layout.current, "MANIFEST")
    baseline_lines: list[str] = [
        f"if [ -f {q(manifest)} ]; then",
        f'  echo {q(MARK + "manifest_digest")} "$(sha256sum < {q(manifest)} | cut -c1-64)"',
    ]
    if baseline:
        baseline_lines += [
            "  " + _section("manifest", cmd("cat", manifest)),
            "  "
            + _section(
                "modes", f"cd {q(layout.current + '/')} && find . -type f -printf '%m %P\\n'"
            ),
        ]
    baseline_lines.append("fi")
    info = posixpath.join(layout.lock, "info")
    lock_time = f"$(stat -c %Y {q(layout.lock)} 2>/dev/null || date +%s)"
    # Without a lock to take (status, releases), just report any holder.
    lock_lines: list[str] = [
        f"if [ -d {q(layout.lock)} ]; then",
        f"  echo {q(MARK + 'lock held')}",
        "  " + _section("lockinfo", cmd("head", "-c", 2000, info)),
        f'  echo {q(MARK + "lockage")} "$(( $(date +%s) - {lock_time} ))"',
        "fi",
    ]
    if lock_info is not None:
        takeover_lines = []
        if takeover:
            # Resuming a run that died holding the lock: that run's lock is ours to take.
            takeover_lines = [
                f"elif grep -qF {q(takeover)} {q(info)} 2>/dev/null; then",
                f"  printf '%s\\n' {q(lock_info)} > {q(info)}",
                f"  echo {q(MARK + 'lock acquired')}",
            ]
        lock_lines = [
            f"if mkdir {q(layout.lock)} 2>/dev/null; then",
            f"  printf '%s\\n' {q(lock_info)} > {q(info)}",
            f"  echo {q(MARK + 'lock acquired')}",
            *takeover_lines,
            "else",
            f"  echo {q(MARK + 'lock held')}",
            "  " + _section("lockinfo", cmd("head", "-c", 2000, info)),
            f'  echo {q(MARK + "lockage")} "$(( $(date +%s) - {lock_time} ))"',
            f"  exit {EXIT_LOCK_HELD}",
            "fi",
        ]
    return Script(
        step="prepare",
        lines=lines(
            refuse_symlinks(layout),
            # Only a run that takes the lock creates the layout; status stays read-only.
            cmd("mkdir", "-p", layout.releases, layout.shared, layout.state)
            if lock_info is not None
            else (),
            lock_lines,
            _section("current", cmd("readlink", layout.current)),
            _section("releases", cmd("ls", "-1", layout.releases)),
            _section("history", cmd("tail", "-n", history_lines, layout.history)),
            baseline_lines,
            # Free space where releases will land; before a first deploy (a read-only
            # preflight) the root does not exist yet, so ask its nearest existing parent.
            f"df_dir={q(layout.root)}",
            'while [ ! -d "$df_dir" ]; do df_dir=$(dirname "$df_dir"); done',
            f'echo {q(MARK + "df")} "$(df -Pk "$df_dir" 2>/dev/null | {FREE_KB})"',
            f"echo {q(MARK + 'end')}",
        ),
    )


def _section(key: str, command: str) -> str:
    """`@@<key> <base64 of command's stdout>` on one line; the command's stderr is dropped
    (error messages can quote file names, which a host's user chooses)."""
    return f"printf '%s ' {q(MARK + key)}; {{ {command}; }} 2>/dev/null | base64 -w0; echo"


def refuse_symlinks(layout: Layout) -> list[str]:
    """Refuse a symlinked `releases/`, `shared/`, `.deploy/` or `.deploy/staging` rather than
    follow it: the cleanup's `rm -rf` and the secrets written under `shared/` would reach
    outside `deploy_to`. `deploy_to` itself may be a symlink (a data disk is a normal layout).
    """
    out = []
    for path in (layout.releases, layout.shared, layout.state, layout.staging):
        message = (
            f"refusing to use {path}: it is a symbolic link; under deploy_to only deploy_to"
            " itself may be one (move the data there, or point deploy_to at the real directory)"
        )
        out.append(
            f"if [ -L {q(path)} ]; then echo {q(message)} >&2; exit {EXIT_UNSAFE_LAYOUT}; fi"
        )
    return out
