"""The checklist items judged from what the hosts said (the `prepare` facts and one health
probe each): hosts, lock, disk, health, rollback target, resources, cleanup. Pure."""

from __future__ import annotations

from deployer.errors import LockHeldError
from deployer.events import CheckItem
from deployer.history import Record, rollback_target
from deployer.preflight.model import (
    CLEANUP,
    DISK,
    FAIL,
    HEALTH,
    HOSTS,
    LOCK,
    PASS,
    RESOURCES,
    ROLLBACK,
    SKIP,
    WARN,
    FleetFacts,
    LocalFacts,
    first_lines,
    make_item,
    unanswered,
)
from deployer.resources import over_limits


def check_hosts(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    bad = {n: e for n, e in fleet.problems.items() if not isinstance(e, LockHeldError)}
    asked = {*fleet.facts, *fleet.problems, *fleet.skipped}
    unasked = [h for h in fleet.hosts if h not in asked]
    if bad:
        lines = [first_lines(e.message) for e in bad.values()]
        if unasked:
            lines.append(f"not contacted (the first host failed first): {' '.join(unasked)}")
        hints = dict.fromkeys(e.hint for e in bad.values() if e.hint)
        remedy = "; ".join(hints) or (
            "bring the host(s) back, or leave them out with --limit '!NAME' (or --skip-unreachable)"
        )
        return make_item(HOSTS, FAIL, lines, remedy)
    if fleet.skipped:
        lines = [
            f"{n}: left out (--skip-unreachable): {e.message.splitlines()[0]}"
            for n, e in fleet.skipped.items()
        ]
        remedy = f"once it is back: invoke deploy --env {local.env} --resume"
        return make_item(HOSTS, WARN, lines, remedy)
    if unasked:
        return make_item(
            HOSTS, SKIP, f"not contacted: {' '.join(unasked)} (the lock stopped the run)"
        )
    return make_item(HOSTS, PASS, f"{len(fleet.facts)} host(s): {' '.join(fleet.facts)}")


def check_lock(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    held = [e.message for e in fleet.problems.values() if isinstance(e, LockHeldError)]
    held += [
        f"{name}: deploy lock is {facts.lock_holder.describe()}"
        for name, facts in fleet.facts.items()
        if facts.lock_holder is not None and not facts.lock_acquired
    ]
    if held:
        remedy = (
            "wait for that run to finish; if it is dead, clear it with"
            f" `invoke unlock --env {local.env}`"
        )
        return make_item(LOCK, FAIL, held, remedy)
    if not fleet.facts:
        return make_item(LOCK, SKIP, "not checked: no host answered")
    state = "taken for this run" if fleet.locking else "free"
    return make_item(LOCK, PASS, f"{state} on {len(fleet.facts)} host(s)")


def check_disk(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    if local.needed_kb is None or not fleet.facts:
        return make_item(DISK, SKIP, "not checked: no host answered")
    low, unknown, room = [], [], []
    for name, facts in fleet.facts.items():
        root = fleet.roots.get(name, "deploy_to")
        if local.release_id in facts.releases:
            continue  # already staged (a resumed run): nothing to send
        if facts.free_kb is None:
            unknown.append(name)
        elif facts.free_kb < local.needed_kb:
            low.append(
                f"{name}: only {facts.free_kb} KiB free under {root}; the release needs about"
                f" {local.needed_kb} KiB (archive + unpacked)"
            )
        else:
            room.append((facts.free_kb, name))
    lines = [*low, *(f"not checked: {n} did not answer" for n in unanswered(fleet))]
    if low:
        remedy = (
            "free space under deploy_to on those hosts (a lower keep_releases, old logs), or"
            f" grow the filesystem; then check again with `invoke preflight --env {local.env}`"
        )
        return make_item(DISK, FAIL, lines, remedy)
    if unknown:
        lines.append(f"free space unknown (df failed) on {' '.join(unknown)}")
        return make_item(DISK, WARN, lines, "check `df -Pk` under deploy_to on those hosts")
    if room:
        least, name = min(room)
        lines.insert(0, f"needs about {local.needed_kb} KiB; least free: {name} with {least} KiB")
    else:
        lines.insert(0, f"{local.release_id} is already on every host")
    return make_item(DISK, PASS, lines)


def check_health(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    if not local.health_configured:
        return make_item(HEALTH, SKIP, "no health check configured")
    running = {n: f.current for n, f in fleet.facts.items() if f.current}
    if not running:
        return make_item(HEALTH, SKIP, "no host runs a release yet (first deploy)")
    if not fleet.probed:
        return make_item(HEALTH, SKIP, "not checked: the run stopped first")
    bad = [
        f"{name} (on {running[name]}): {probe.detail.strip()[:200]}"
        for name, probe in fleet.probes.items()
        if name in running and not probe.ok
    ]
    idle = [n for n in fleet.facts if n not in running]
    notes = [*(f"not checked: {n} did not answer" for n in unanswered(fleet))]
    if idle:
        notes.append(f"no release yet on {' '.join(idle)}")
    if bad:
        remedy = (
            f"look at those hosts (`invoke status --env {local.env}`); if this deploy is the"
            " fix, deploy with --override health"
        )
        return make_item(HEALTH, FAIL, [*bad, *notes], remedy)
    return make_item(HEALTH, PASS, [f"{len(running)} host(s) healthy on their release", *notes])


def check_rollback(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    """Per host: the release a failed deploy returns it to (what `current` points at now), and
    the one `invoke rollback` would pick after this deploy, must both be on the host."""
    bad: list[str] = []
    ok: dict[str, list[str]] = {}  # target -> hosts
    deployed = Record(
        time="", user="", release=local.release_id, action="deploy", result="success", run_id=""
    )
    for name, facts in fleet.facts.items():
        current = facts.current
        if current == local.release_id:  # resuming: as `strategies.rolling` decides
            current = rollback_target(facts.history, current)
        if current is None:
            continue  # first deploy on this host: nothing to return to
        later = rollback_target([*facts.history, deployed], local.release_id)
        if current not in facts.releases:
            bad.append(
                f"{name}: a failed deploy would return it to {current}, but"
                f" releases/{current} is missing"
            )
        elif later is not None and later not in facts.releases:
            bad.append(
                f"{name}: `invoke rollback` after this deploy would return it to {later},"
                f" but releases/{later} is missing"
            )
        else:
            ok.setdefault(current, []).append(name)
    if bad:
        remedy = (
            f"see `invoke releases --env {local.env}`; to deploy anyway (a failed batch then"
            " stays on the new release on those hosts), deploy with --override rollback"
        )
        return make_item(ROLLBACK, FAIL, bad, remedy)
    if not ok:
        return make_item(ROLLBACK, SKIP, "first deploy: no release to return to yet")
    targets = [f"{' '.join(names)} to {target}" for target, names in ok.items()]
    return make_item(ROLLBACK, PASS, f"a failed deploy returns {', '.join(targets)}")


def check_resources(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    """A warning, never a failure: a busy or nearly full host can still take a release, but
    the operator should know before it does (see `deployer.resources`)."""
    reported = {n: f.resources for n, f in fleet.facts.items() if f.resources is not None}
    if not reported:
        return make_item(RESOURCES, SKIP, "not checked: no host reported its resources")
    over = [
        f"{name}: {'; '.join(reasons)}"
        for name, r in reported.items()
        if (reasons := over_limits(r, local.resource_limits))
    ]
    if over:
        remedy = (
            "free disk or inodes under deploy_to (a lower keep_releases, old logs), or look at"
            f" what loads the host: `invoke status --env {local.env}` shows each host's use;"
            " the limits are the playbook's resources.warn"
        )
        return make_item(RESOURCES, WARN, over, remedy)
    return make_item(RESOURCES, PASS, f"{len(reported)} host(s) within resources.warn limits")


def check_cleanup(local: LocalFacts, fleet: FleetFacts) -> CheckItem:
    """Releases (not live) holding a directory the deploy user cannot empty, typically files
    an app running as root wrote: pruning them would fail (a warning after the deploy)."""
    if not fleet.facts:
        return make_item(CLEANUP, SKIP, "not checked: no host answered")
    found = [
        f"{name}: {fleet.roots.get(name, 'deploy_to')}/releases/{u.release}/{u.path}"
        f" is owned by {u.owner}"
        for name, facts in sorted(fleet.facts.items())
        for u in facts.unremovable
    ]
    if not found:
        return make_item(CLEANUP, PASS, "every release but the live one can be pruned")
    if local.cleanup_sudo:
        return make_item(
            CLEANUP, PASS, [*found, "pruned with `sudo -n rm` (cleanup: {sudo: true})"]
        )
    remedy = (
        "pruning these will fail (a warning; the deploy still succeeds): `sudo chown -R`"
        " them to the deploy user, or set `cleanup: {sudo: true}` in the playbook when it"
        " has passwordless sudo"
    )
    return make_item(CLEANUP, WARN, found, remedy)
