"""The prepare step: create the layout, take the lock, report the host's facts. Pure."""

from __future__ import annotations

import posixpath

from deployer.remote.scripts.common import EXIT_LOCK_HELD, FREE_KB, MARK, Layout
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

    Output sections, parsed by `deployer.facts.parse_facts`.
    """
    manifest = posixpath.join(layout.current, "MANIFEST")
    baseline_lines: list[str] = [
        f"if [ -f {q(manifest)} ]; then",
        f'  echo {q(MARK + "manifest_digest")} "$(sha256sum < {q(manifest)} | cut -c1-64)"',
    ]
    if baseline:
        baseline_lines += [
            f"  echo {q(MARK + 'manifest')}",
            f"  cat {q(manifest)}",
            f"  echo {q(MARK + 'modes')}",
            f"  (cd {q(layout.current + '/')} && find . -type f -printf '%m %P\\n')",
        ]
    baseline_lines.append("fi")
    info = posixpath.join(layout.lock, "info")
    lock_time = f"$(stat -c %Y {q(layout.lock)} 2>/dev/null || date +%s)"
    # Without a lock to take (status, releases), just report any holder.
    lock_lines: list[str] = [
        f"if [ -d {q(layout.lock)} ]; then",
        f"  echo {q(MARK + 'lock held')}",
        f'  echo {q(MARK + "lockinfo")} "$(cat {q(info)} 2>/dev/null | head -c 2000)"',
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
            f'  echo {q(MARK + "lockinfo")} "$(cat {q(info)} 2>/dev/null | head -c 2000)"',
            f'  echo {q(MARK + "lockage")} "$(( $(date +%s) - {lock_time} ))"',
            f"  exit {EXIT_LOCK_HELD}",
            "fi",
        ]
    return Script(
        step="prepare",
        lines=lines(
            # Only a run that takes the lock creates the layout; status stays read-only.
            cmd("mkdir", "-p", layout.releases, layout.shared, layout.state)
            if lock_info is not None
            else (),
            lock_lines,
            f'echo {q(MARK + "current")} "$(readlink {q(layout.current)} || true)"',
            f"echo {q(MARK + 'releases')}",
            f"ls -1 {q(layout.releases)} 2>/dev/null || true",
            f"echo {q(MARK + 'history')}",
            f"if [ -f {q(layout.history)} ]; then tail -n {history_lines} {q(layout.history)}; fi",
            baseline_lines,
            # Free space where releases will land; before a first deploy (a read-only
            # preflight) the root does not exist yet, so ask its nearest existing parent.
            f"df_dir={q(layout.root)}",
            'while [ ! -d "$df_dir" ]; do df_dir=$(dirname "$df_dir"); done',
            f'echo {q(MARK + "df")} "$(df -Pk "$df_dir" 2>/dev/null | {FREE_KB})"',
            f"echo {q(MARK + 'end')}",
        ),
    )
