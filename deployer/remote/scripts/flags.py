"""The feature-flags push step: replace `shared/flags.json` atomically under the lock. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from deployer.remote.scripts.common import (
    MARK,
    Layout,
    _append_history,
    _step,
    _unlock_if_ours,
)
from deployer.remote.shell import Raw, Script, Stdin, cmd, q


def push_flags(
    layout: Layout,
    run_id: str,
    *,
    content: bytes,
    history: Sequence[str],
    name: str = "flags.json",
) -> Script:
    """Replace `shared/<name>` with `content` (sent on stdin) without a deploy or a restart:
    written to a temporary name beside it, its size checked, then renamed over the old one,
    so an app reading it sees the old file or the new one, never part of either. Created with
    the deploy user's umask (the app must read it; it holds no secret). Then the history
    records are appended and our lock released, in the same session.
    """
    target = posixpath.join(layout.shared, name)
    tmp = posixpath.join(layout.shared, f".{name}.tmp-{run_id}")
    size = len(content)
    write = f'head -c {size} > {q(tmp)} && [ "$(stat -c %s {q(tmp)})" = {size} ]'
    failed = cmd("echo", f"writing {target} failed (short read or full disk)", Raw(">&2"))
    body = [
        _step("flags"),
        cmd("mkdir", "-p", layout.shared, layout.state),
        # We hold the lock: temporary files left by a killed push are debris.
        f"rm -f {q(layout.shared)}/.{q(name)}.tmp-*",
        f"{write} || {{ rm -f {q(tmp)}; {failed}; exit 1; }}",
        cmd("mv", "-fT", tmp, target),
        *_append_history(layout, history),
        _unlock_if_ours(layout, run_id),
        f"echo {q(MARK + 'flags pushed')} {q(str(size))}",
    ]
    return Script(step="flags", lines=tuple(body), stdin=Stdin((content,)))
