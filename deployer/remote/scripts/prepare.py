"""The prepare step: create the layout, take the lock, report the host's facts. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from deployer.remote.resources import HOST_REPORT, resource_lines
from deployer.remote.scripts.common import (
    _OWN_LINK,
    EXIT_LOCK_HELD,
    EXIT_UNSAFE_LAYOUT,
    FINISHING,
    FREE_KB,
    MARK,
    STALE_FINISH,
    Layout,
    section,
)
from deployer.remote.shell import Script, cmd, lines, q


def prepare(
    layout: Layout,
    *,
    lock_info: str | None,
    baseline: bool = False,
    takeover: str | None = None,
    history_lines: int = 500,
    pidfile: str | None = None,
    systemd_unit: str | None = None,
) -> Script:
    """Create the layout, take the lock (when `lock_info` is given) and report the host's facts.
    With `baseline`, also the current release's MANIFEST and file modes, so the next upload
    can send only what changed (see `deployer.delta`). The host's resource use is reported
    too; the app's processes only when `pidfile` or `systemd_unit` says where to find them.

    Output: one `@@<key> <value>` line per fact, parsed by `deployer.facts.parse_facts`.
    Whatever the host's files hold (its MANIFEST, history, lock info, release names, the
    `current` link) and its resource report (process names are the host's to choose) travels
    base64-encoded with its stderr dropped, so no file content can ever be read as a marker
    line; the other values are numbers and digests we check.
    """
    manifest = posixpath.join(layout.current, "MANIFEST")
    baseline_lines: list[str] = [
        f"if [ -f {q(manifest)} ]; then",
        f'  echo {q(MARK + "manifest_digest")} "$(sha256sum < {q(manifest)} | cut -c1-64)"',
    ]
    if baseline:
        baseline_lines += [
            "  " + section("manifest", cmd("cat", manifest)),
            "  "
            + section(
                "modes", f"cd {q(layout.current + '/')} && find . -type f -printf '%m %P\\n'"
            ),
        ]
    baseline_lines.append("fi")
    info = posixpath.join(layout.lock, "info")
    finishing = posixpath.join(layout.lock, FINISHING)
    lock_time = f"$(stat -c %Y {q(layout.lock)} 2>/dev/null || date +%s)"
    finish_age = f"$(( $(date +%s) - $(stat -c %Y {q(finishing)} 2>/dev/null || date +%s) ))"
    holder = [
        f"  echo {q(MARK + 'lock held')}",
        "  " + section("lockinfo", cmd("head", "-c", 2000, info)),
        f'  echo {q(MARK + "lockage")} "$(( $(date +%s) - {lock_time} ))"',
        f'  if [ -f {q(finishing)} ]; then echo {q(MARK + "lockfinishing")} "{finish_age}"; fi',
    ]
    # Without a lock to take (status, releases), just report any holder.
    lock_lines: list[str] = [f"if [ -d {q(layout.lock)} ]; then", *holder, "fi"]
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
            # A run whose outcome is recorded and whose finish stopped part-way (killed, host
            # rebooted) left only cleanup undone: after STALE_FINISH seconds, the lock is ours.
            f"elif [ -f {q(finishing)} ] && [ {finish_age} -gt {STALE_FINISH} ]; then",
            "  " + section("lockstale", cmd("head", "-c", 2000, info)),
            f"  rm -f {q(finishing)}",
            f"  printf '%s\\n' {q(lock_info)} > {q(info)}",
            f"  echo {q(MARK + 'lock acquired')}",
            "else",
            *holder,
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
            section("current", cmd("readlink", layout.current)),
            section("releases", cmd("ls", "-1", layout.releases)),
            section("history", cmd("tail", "-n", history_lines, layout.history)),
            baseline_lines,
            _foreign(layout),
            # Free space where releases will land; before a first deploy (a read-only
            # preflight) the root does not exist yet, so ask its nearest existing parent.
            f"df_dir={q(layout.root)}",
            'while [ ! -d "$df_dir" ]; do df_dir=$(dirname "$df_dir"); done',
            f'echo {q(MARK + "df")} "$(df -Pk "$df_dir" 2>/dev/null | {FREE_KB})"',
            section("resources", HOST_REPORT),
            resource_lines(MARK, layout.root, pidfile=pidfile, systemd_unit=systemd_unit),
            f"echo {q(MARK + 'end')}",
        ),
    )


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


def _foreign(layout: Layout) -> list[str]:
    """Report, never touch: entries in deploy_to this tool did not create (`@@foreign`). One
    line each, its value the base64 of `KIND<TAB>NAME`: the names are the host's to choose."""
    root = q(layout.root)
    return [
        f"if [ -d {root} ]; then for entry in {root}/* {root}/.[!.]*; do",
        '  [ -e "$entry" ] || [ -L "$entry" ] || continue',
        "  name=${entry##*/}",
        '  case "$name" in releases|shared|current|.deploy) continue ;; esac',
        f'  case "$name" in .current.{_OWN_LINK}) [ -L "$entry" ] && continue ;; esac',
        '  kind=file; [ -L "$entry" ] && kind=symlink; [ -d "$entry" ] && [ ! -L "$entry" ]'
        " && kind=directory",
        f"  printf '%s %s\\n' {q(MARK + 'foreign')}"
        ' "$(printf \'%s\\t%s\' "$kind" "$name" | base64 -w0)"',
        "done; fi",
    ]


def unremovable(layout: Layout, releases: Sequence[str]) -> Script:
    """Report, never touch: which of `releases` (the ones a deploy would prune; never the
    live one) hold a non-empty directory we do not own, which pruning could not delete
    (`@@unremovable`, one line each, the base64 of `RELEASE<TAB>OWNER<TAB>PATH`). Searching
    only these keeps a host with many big releases from walking them all on every deploy."""
    paths = " ".join(q(layout.release(r)) for r in releases)
    return Script(
        step="unremovable",
        lines=(
            f'live="$(readlink {q(layout.current)} || true)"',
            f"for release in {paths}; do",
            '  [ -d "$release" ] && [ "$release" != "$live" ] || continue',
            '  found=$(find "$release" -mindepth 1 -type d ! -user "$(id -u)" ! -empty'
            " -printf '%u\\t%P' -quit 2>/dev/null || true)",
            f"  if [ -n \"$found\" ]; then printf '%s %s\\n' {q(MARK + 'unremovable')}"
            ' "$(printf \'%s\\t%s\' "${release##*/}" "$found" | base64 -w0)"; fi',
            "done",
        ),
    )
