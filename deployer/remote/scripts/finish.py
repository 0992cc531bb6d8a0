"""The finish step (history, prune, staging debris, our lock) and `unlock`. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from deployer.remote.scripts.common import (
    MARK,
    Layout,
    _append_history,
    _remove_release,
    _step,
    _unlock_if_ours,
)
from deployer.remote.shell import Script, q


def finish(
    layout: Layout,
    run_id: str,
    *,
    history: Sequence[str],
    prune: Sequence[str],
    remove_staged: Sequence[str] = (),
) -> Script:
    """Record the outcome, prune old releases, drop staging debris and release our lock.

    `prune` and `remove_staged` are release ids decided locally from the recorded history;
    the script re-checks that none of them is what `current` points at.
    """
    body: list[str] = [_step("finish"), *_append_history(layout, history)]
    for release_id in (*remove_staged, *prune):
        path = layout.release(release_id)
        body.append(
            f'if [ "$(readlink {q(layout.current)} || true)" != {q(path)} ]; then '
            f"{_remove_release(path)}; fi"
        )
    body += [
        # We hold the lock, so nothing in staging belongs to a live run: debris of ours or of
        # a run that was killed goes.
        f"chmod -R u+w {q(layout.staging)} 2>/dev/null || true",
        f"rm -rf {q(layout.staging)}/*",
        # A deployer killed between `ln` and `mv` leaves a temporary link; we hold the lock.
        f"rm -f {q(layout.root)}/.current.*",
        _unlock_if_ours(layout, run_id),
        f"echo {q(MARK + 'finished')}",
    ]
    return Script(step="finish", lines=tuple(body))


def unlock(layout: Layout, *, run_id: str | None) -> Script:
    """Release the lock: ours only (by run id), or whoever holds it when `run_id` is None."""
    info = posixpath.join(layout.lock, "info")
    if run_id is not None:
        body = [_unlock_if_ours(layout, run_id)]
    else:
        body = [
            f"if [ -d {q(layout.lock)} ]; then echo {q(MARK + 'lockinfo')} "
            f'"$(cat {q(info)} 2>/dev/null | head -c 2000)"; rm -rf {q(layout.lock)}; fi',
        ]
    return Script(step="unlock", lines=tuple(body))
