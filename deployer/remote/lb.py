"""The load balancer's remote step for blue-green: install a rendered upstream config,
validate it, reload, and record which color is now live, in one session. Pure: builds the
script only. It must never leave a config that failed validation in place.

On the load balancer host:

    <dest>                       the upstream config the load balancer includes
    <dir of dest>/.<name>.previous   the config it replaced (what a failed check restores)
    <deploy_to>/.deploy/live     "<color> <release>": the live color, for people and scripts
    <deploy_to>/.deploy/history.jsonl   a `traffic` record per switch (what the deployer reads)
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence

from deployer.remote.scripts import MARK, Layout
from deployer.remote.shell import Raw, Script, Stdin, cmd, q

EXIT_INVALID_CONFIG = 67
EXIT_RELOAD_FAILED = 68


def step_line(name: str) -> str:
    return cmd("echo", f"{MARK}step {name}")


def install_config(
    run_id: str,
    *,
    dest: str,
    write: Callable[[str], str],
    validate: str | None,
    reload: str,
    rejected: str,
    reload_failed: str,
    also_create: Sequence[str] = (),
    before_reload: Sequence[str] = (),
) -> list[str]:
    """The lines that install a new config at `dest`, validate it, reload, or restore the
    previous config: blue-green's switch and drain's step are both made of them. `write(tmp)`
    is the line that writes the new config to `tmp`, beside `dest`; it is renamed over `dest`
    (the load balancer reads it only on reload, and the file is never half-written), then
    `validate` checks it in place, because a main config includes `dest` by its path. A failed
    check or reload puts the previous file back (or removes `dest` when there was none) and
    exits non-zero, printing `rejected` or `reload_failed`. `before_reload` runs between the
    check and the reload."""
    folder, name = posixpath.split(dest)
    tmp = posixpath.join(folder, f".{name}.new-{run_id}")
    previous = posixpath.join(folder, f".{name}.previous")
    restore = (
        f'if [ "$had_previous" = 1 ]; then {cmd("cp", "-p", previous, tmp)} &&'
        f" {cmd('mv', '-fT', tmp, dest)}; else {cmd('rm', '-f', dest)}; fi"
    )
    body = [
        step_line("write"),
        cmd("mkdir", "-p", folder, *also_create),
        write(tmp),
        cmd("chmod", "0644", tmp),
        # Kept beside it: what a failed check restores, and what an operator can diff.
        f"if [ -e {q(dest)} ]; then had_previous=1; {cmd('cp', '-p', dest, previous)};"
        f" else had_previous=0; {cmd('rm', '-f', previous)}; fi",
        step_line("install"),
        cmd("mv", "-fT", tmp, dest),
    ]
    if validate:
        body += [
            step_line("validate"),
            f"if ! ( {validate} ) 2>&1; then {restore}; {cmd('echo', rejected, Raw('>&2'))};"
            f" exit {EXIT_INVALID_CONFIG}; fi",
        ]
    return [
        *body,
        *before_reload,
        step_line("reload"),
        f"if ! ( {reload} ) 2>&1; then {restore}; {cmd('echo', reload_failed, Raw('>&2'))};"
        f" exit {EXIT_RELOAD_FAILED}; fi",
    ]


def live_file(layout: Layout) -> str:
    return posixpath.join(layout.state, "live")


def switch_traffic(
    layout: Layout,
    run_id: str,
    *,
    dest: str,
    config: bytes,
    validate: str | None,
    reload: str,
    color: str,
    release: str | None,
    history: Sequence[str],
) -> Script:
    """Point the load balancer at `color`: `install_config` with the new config on stdin
    (its size checked once written), then record the live color. A failed check, or a failed
    reload, puts the previous file back and exits non-zero with the command's output: traffic
    stays where it was."""
    live = live_file(layout)
    size = len(config)

    def write(tmp: str) -> str:
        check = f'head -c {size} > {q(tmp)} && [ "$(stat -c %s {q(tmp)})" = {size} ]'
        failed = cmd("echo", f"writing {tmp} failed", Raw(">&2"))
        return f"{check} || {{ rm -f {q(tmp)}; {failed}; exit 1; }}"

    body = install_config(
        run_id,
        dest=dest,
        write=write,
        also_create=(layout.state,),
        validate=validate,
        reload=reload,
        rejected=(
            f"{validate!r} rejected the new {dest}; the previous config is back in place and"
            " traffic was not switched"
        ),
        reload_failed=(
            f"{reload!r} failed; the previous {dest} is back in place (the load balancer still"
            " runs its old config, or is down)"
        ),
    )
    state = f"{color} {release or '-'}"
    body += [
        step_line("record"),
        *(cmd("printf", "%s\\n", record, Raw(">>"), layout.history) for record in history),
        f"printf '%s\\n' {q(state)} > {q(live + '.tmp')}",
        cmd("mv", "-fT", live + ".tmp", live),
        f"echo {q(MARK + 'live')} {q(color)}",
    ]
    return Script(step="traffic", lines=tuple(body), stdin=Stdin((config,)))
