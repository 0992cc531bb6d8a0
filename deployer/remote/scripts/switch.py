"""The switch step and the playbook's own commands run on a host (migration, hooks, command
health checks). Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from deployer.remote.scripts.common import (
    EXIT_MISSING_RELEASE,
    MARK,
    Layout,
    _exports,
    _step,
)
from deployer.remote.shell import Script, cmd, lines, q


def migrate(layout: Layout, release_id: str, command: str, env: Mapping[str, str]) -> Script:
    """Run the playbook's migration command once, from the new release."""
    return Script(
        step="migrate",
        lines=lines(
            _step("migrate"),
            cmd("cd", layout.release(release_id)),
            _exports(env),
            command,
        ),
    )


def switch(
    layout: Layout,
    release_id: str,
    run_id: str,
    *,
    restart: str | None,
    env: Mapping[str, str],
) -> Script:
    """Point `current` at the release by renaming a fresh symlink over it (never unlink-then-
    link, so readers always see a complete release), then restart the app."""
    target = layout.release(release_id)
    tmp_link = posixpath.join(layout.root, f".current.{run_id}")
    body = [
        _step("switch"),
        f"if [ ! -d {q(target)} ]; then echo {q(f'release {target} is missing')} >&2;"
        f" exit {EXIT_MISSING_RELEASE}; fi",
        # -fn replaces a leftover link of this run in the same process (one fork less per host
        # per batch than rm + ln: the switch is on every batch's critical path).
        cmd("ln", "-sfn", target, tmp_link),
        cmd("mv", "-T", tmp_link, layout.current),
    ]
    if restart:
        body += [_step("restart"), cmd("cd", target), *_exports(env), restart]
    body.append(f"echo {q(MARK + 'switched')} {q(release_id)}")
    return Script(step="switch", lines=tuple(body))


def hook(layout: Layout, point: str, command: str, env: Mapping[str, str]) -> Script:
    """A playbook hook on one host, run from the application root."""
    return Script(
        step=f"hook {point}",
        lines=lines(cmd("cd", layout.root), _exports({**env, "DEPLOY_HOOK": point}), command),
    )


def check_command(layout: Layout, command: str, env: Mapping[str, str]) -> Script:
    """A command health check, run in the live release; exit 0 means healthy."""
    return Script(
        step="health",
        lines=lines(cmd("cd", layout.current), _exports(env), command),
    )
