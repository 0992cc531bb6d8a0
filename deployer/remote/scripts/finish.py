"""The finish step (history, prune, staging debris, our lock) and `unlock`. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from deployer.remote.scripts.common import (
    _OWN_LINK,
    FINISHING,
    MARK,
    Layout,
    _append_history,
    _step,
    _unlock_if_ours,
    section,
)
from deployer.remote.shell import Script, cmd, q


def _best_effort_remove(*, sudo: bool) -> list[str]:
    """A shell function `remove PATH` that deletes a release or staging directory and never
    fails: what it cannot delete is reported as `@@cleanup PATH<TAB>OWNER<TAB>CAUSE` (the
    owner of the first entry not ours: root-owned files are the usual cause)."""
    body = [
        "remove() {",
        '  [ -e "$1" ] || [ -L "$1" ] || return 0',
        '  chmod -R u+w -- "$1" 2>/dev/null || true',
        '  if err=$(rm -rf -- "$1" 2>&1); then return 0; fi',
    ]
    if sudo:  # `cleanup: {sudo: true}`: files an app wrote as root; -n never prompts
        body.append('  if sudo -n rm -rf -- "$1" 2>/dev/null; then return 0; fi')
    body += [
        '  owner=$(find "$1" ! -user "$(id -u)" -printf \'%u\' -quit 2>/dev/null || true)',
        f'  printf \'%s %s\\t%s\\t%s\\n\' {q(MARK + "cleanup")} "$1" "$owner"'
        ' "$(printf \'%s\\n\' "$err" | head -n 1)"',
        "}",
    ]
    return body


def finish(
    layout: Layout,
    run_id: str,
    *,
    history: Sequence[str],
    prune: Sequence[str],
    remove_staged: Sequence[str] = (),
    sudo: bool = False,
) -> Script:
    """Record the outcome and release our lock, whatever cleanup does: then prune old
    releases and drop this tool's own debris, best effort.

    The lock is released by an EXIT trap, so a failing command or a dropped connection
    (SIGHUP/SIGPIPE) still gives it back. Once the history is written, a `finishing` file in
    the lock says the run's outcome is recorded, so a lock left by a finish that was killed
    outright is recognised (and taken over when stale, see `prepare`). Pruning stays under
    the lock so that no concurrent run can pick a release we are deleting. Nothing here can
    fail: what cannot be removed is reported as `@@cleanup` lines (`remove` above), and the
    next deploy retries it. `prune` and `remove_staged` are release ids decided locally from
    the recorded history; the script re-checks that none of them is what `current` points at.
    """
    unlock = _unlock_if_ours(layout, run_id)
    own_link = posixpath.join(layout.root, f".current.{run_id}")
    body: list[str] = [
        _step("finish"),
        # A function, not the text twice: quoted for `trap`, the text cost as much again on
        # every host's wire (issue 18).
        f"unlock_ours() {{ {unlock}; }}",
        "trap unlock_ours EXIT",
        *_append_history(layout, history),
        f"if [ -d {q(layout.lock)} ]; then : > {q(posixpath.join(layout.lock, FINISHING))}"
        " 2>/dev/null || true; fi",
        _step("cleanup"),
        *_best_effort_remove(sudo=sudo),
    ]
    for release_id in (*remove_staged, *prune):
        path = layout.release(release_id)
        body.append(
            f'if [ "$(readlink {q(layout.current)} || true)" != {q(path)} ]; then '
            f"remove {q(path)}; fi"
        )
    body += [
        # We hold the lock, so nothing in our own staging directory belongs to a live run.
        f'for entry in {q(layout.staging)}/* {q(layout.staging)}/.[!.]*; do remove "$entry"; done',
        f"if [ -L {q(own_link)} ]; then rm -f {q(own_link)}; fi",  # only after a failed switch
        # A run killed between `ln` and `mv` left its link: ours only if it is one.
        f"for link in {q(layout.root)}/.current.{_OWN_LINK}; do"
        f' if [ -L "$link" ]; then case "$(readlink "$link")" in {q(layout.releases + "/")}*)'
        ' rm -f "$link" ;; esac; fi; done',
        "unlock_ours",
        "trap - EXIT",
        f"echo {q(MARK + 'finished')}",
    ]
    return Script(step="finish", lines=tuple(body))


def unlock(layout: Layout, *, run_id: str | None) -> Script:
    """Release the lock: ours only (by run id), or whoever holds it when `run_id` is None."""
    info = posixpath.join(layout.lock, "info")
    if run_id is not None:
        body = [_unlock_if_ours(layout, run_id)]
    else:
        # Who held it, framed as prepare frames it: the info file is the host's to write.
        lockinfo = section("lockinfo", cmd("head", "-c", 2000, info))
        body = [f"if [ -d {q(layout.lock)} ]; then {lockinfo}; rm -rf {q(layout.lock)}; fi"]
    return Script(step="unlock", lines=tuple(body))
