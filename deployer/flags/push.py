"""The flag operations a user runs: `list` (the file and what every host has, drift marked),
`set` (change one flag in the file, then push) and `push` (send the file as it is). A push
takes the deploy lock on every host (all-or-nothing, as a deploy does), then in one session
per host renames the new `shared/flags.json` into place, appends a `flags` history record and
releases the lock. It never deploys, restarts or touches a release.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deployer.api import PLACEHOLDER_RELEASE, Loaded, Options
from deployer.errors import DeployerError, DeployFailed
from deployer.events import EventBus
from deployer.flags.edit import set_flag_text
from deployer.flags.model import (
    Flag,
    FlagSet,
    FlagState,
    flags_path,
    load_flags,
    parse_flags,
    parse_pushed,
)
from deployer.flags.remote import parse_read, read_flags
from deployer.history import Record
from deployer.locking import acquire_locks, release_locks
from deployer.plan import HostPlan
from deployer.remote import scripts
from deployer.remote.ssh import SSHTransport
from deployer.runner import Runner, failures, new_run_id, operator, utc_now

__all__ = ["FlagsReport", "HostFlags", "Pushed", "list_flags", "push_flags", "set_flag"]


def open_runner(loaded: Loaded, options: Options) -> Runner:
    """A Runner over SSH built exactly as `deployer.api` builds one for status and deploys."""
    conn = loaded.playbook.connection
    transport = options.transport or SSHTransport(
        connect_timeout=conn.connect_timeout, accept_new_host_keys=options.accept_new_host_keys
    )
    bus = EventBus()
    for reporter in options.reporters:
        bus.subscribe(reporter)
    return Runner(transport, bus, parallel=conn.parallel, command_timeout=conn.command_timeout)


def _hosts(loaded: Loaded, run_id: str) -> tuple[HostPlan, ...]:
    # Layouts only: no templates rendered, no secrets resolved.
    return loaded.plan(PLACEHOLDER_RELEASE, run_id, render_files=False).hosts


# ------------------------------------------------------------------------------- list


@dataclass(frozen=True)
class HostFlags:
    host: str
    release: str | None = None
    flags: Mapping[str, FlagState] | None = None  # None: no flags file on the host
    error: str | None = None  # unreachable, or a file that is not a flags document

    def state(self, name: str) -> FlagState | None:
        return None if self.flags is None else self.flags.get(name)


@dataclass(frozen=True)
class FlagsReport:
    flagset: FlagSet
    hosts: tuple[HostFlags, ...]

    def drift(self, name: str) -> tuple[str, ...]:
        """Hosts (that answered) whose flag `name` differs from the file."""
        want = self.flagset.get(name).state
        return tuple(h.host for h in self.hosts if h.error is None and h.state(name) != want)

    def extra(self) -> dict[str, tuple[str, ...]]:
        """Flags a host has that the file no longer defines: host -> names."""
        known = {f.name for f in self.flagset.flags}
        out = {}
        for h in self.hosts:
            names = tuple(sorted(set(h.flags or {}) - known))
            if names and h.error is None:
                out[h.host] = names
        return out

    @property
    def has_drift(self) -> bool:
        return bool(self.extra()) or any(self.drift(f.name) for f in self.flagset.flags)

    def to_data(self) -> dict[str, object]:
        return {
            "env": self.flagset.env,
            "file": self.flagset.file,
            "flags": [
                {
                    "name": f.name,
                    "description": f.description,
                    "file": asdict(f.state),
                    "hosts": {
                        h.host: _state_data(h.state(f.name)) for h in self.hosts if h.error is None
                    },
                    "drift": list(self.drift(f.name)),
                }
                for f in self.flagset.flags
            ],
            "hosts": [
                {
                    "host": h.host,
                    "release": h.release,
                    "has_file": h.flags is not None,
                    "error": h.error,
                }
                for h in self.hosts
            ],
            "extra": self.extra(),
        }


def _state_data(state: FlagState | None) -> dict[str, object] | None:
    return None if state is None else asdict(state)


def load_env_flags(loaded: Loaded) -> FlagSet:
    return load_flags(flags_path(loaded.project.root, loaded.env), loaded.env)


def list_flags(loaded: Loaded, options: Options) -> FlagsReport:
    """The file's flags and what every host has: one read-only session per host."""
    flagset = load_env_flags(loaded)
    hosts = _hosts(loaded, new_run_id())
    runner = open_runner(loaded, options)
    try:
        results = runner.each(
            hosts, lambda hp: parse_read(runner.step(hp.host, read_flags(hp.layout)).output)
        )
    finally:
        runner.close()
    rows = []
    for hp in hosts:
        result = results[hp.name]
        if isinstance(result, DeployerError):
            rows.append(HostFlags(hp.name, error=str(result)))
            continue
        if result.text is None:
            rows.append(HostFlags(hp.name, result.current))
            continue
        try:
            rows.append(HostFlags(hp.name, result.current, parse_pushed(result.text)))
        except ValueError as exc:
            rows.append(HostFlags(hp.name, result.current, error=f"unreadable flags file: {exc}"))
    return FlagsReport(flagset, tuple(rows))


# ------------------------------------------------------------------------- set / push


@dataclass(frozen=True)
class Pushed:
    """The outcome of a push that reached every host."""

    flagset: FlagSet
    releases: Mapping[str, str | None]  # host -> its live release (unchanged by the push)
    sha256: str  # of the pushed document
    file_changed: bool = False
    flag: Flag | None = None  # the flag `set` changed
    run_id: str = field(default="")


def set_flag(
    loaded: Loaded,
    options: Options,
    name: str,
    *,
    on: bool = False,
    off: bool = False,
    percent: int | None = None,
    allow: Sequence[str] | None = None,
) -> Pushed:
    """Change one flag in `flags/<env>.yml` (in place, comments kept) and push the file."""
    path = flags_path(loaded.project.root, loaded.env)
    flagset = load_env_flags(loaded)
    target = flagset.get(name).changed(on=on, off=off, percent=percent, allow=allow)
    old_text = path.read_text(encoding="utf-8")
    new_text = set_flag_text(old_text, flagset.file, loaded.env, target)
    new_set = parse_flags(new_text, flagset.file, loaded.env)
    change = f"{name}: {target.state.describe()}"

    def write_file() -> None:
        # Only once every host is locked: a refused push leaves the file as it was.
        if new_text == old_text:
            return
        try:
            _write_atomically(path, new_text)
        except OSError as exc:
            raise DeployerError(
                f"cannot write {flagset.file}: {exc.strerror}; nothing was pushed"
            ) from None

    pushed = _push(loaded, options, new_set, change, before_push=write_file)
    return Pushed(
        new_set, pushed.releases, pushed.sha256, new_text != old_text, target, pushed.run_id
    )


def push_flags(loaded: Loaded, options: Options) -> Pushed:
    """Push `flags/<env>.yml` as it is (after a hand edit, or to repair drift)."""
    flagset = load_env_flags(loaded)
    return _push(loaded, options, flagset, f"push {flagset.file}")


def _push(
    loaded: Loaded,
    options: Options,
    flagset: FlagSet,
    change: str,
    before_push: Callable[[], None] | None = None,
) -> Pushed:
    content = flagset.to_json()
    digest = hashlib.sha256(content).hexdigest()
    run_id = new_run_id()
    hosts = _hosts(loaded, run_id)
    runner = open_runner(loaded, options)
    done: set[str] = set()
    try:
        facts = acquire_locks(runner, hosts, run_id, "flags", change)
        if before_push is not None:
            before_push()

        def push(hp: HostPlan) -> str | None:
            current = facts[hp.name].current
            script = scripts.push_flags(
                hp.layout,
                run_id,
                content=content,
                history=[_history_record(run_id, current, change, digest)],
            )
            runner.step(hp.host, script)
            done.add(hp.name)
            return current

        results = runner.each(hosts, push)
        failed = failures(results)
        if failed:
            raise DeployFailed(
                f"flags pushed to {len(done)} of {len(hosts)} host(s);"
                f" failed on {', '.join(sorted(failed))}",
                failures=list(failed.values()),
                hint=f"once the host(s) are back: invoke flags.push --env {loaded.env}",
            )
        releases = {name: r for name, r in results.items() if not isinstance(r, DeployerError)}
        return Pushed(flagset, releases, digest, run_id=run_id)
    finally:
        try:
            # Our lock only (matched by run id), wherever the push did not release it itself.
            leftover = [hp for hp in hosts if hp.name not in done]
            if leftover:
                release_locks(runner, leftover, run_id)
        finally:
            runner.close()


def _history_record(run_id: str, current: str | None, change: str, digest: str) -> str:
    """A `flags` history record: release is what the host runs (`release_stack` ignores the
    action, so rollback order is untouched); `change` and `flags_sha256` say what was pushed."""
    record = Record(
        time=utc_now(),
        user=operator(),
        release=current or "",
        action="flags",
        result="success",
        run_id=run_id,
        previous=current,
    )
    data = {**asdict(record), "change": change, "flags_sha256": digest}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
