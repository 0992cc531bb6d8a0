"""The stage step of every deploy strategy: the release (or a delta against each host's own
current release) onto every host, verified there against the MANIFEST before anything goes
live. Over SSH or, with `artifacts: {store: s3}`, fetched by each host from the store."""

from __future__ import annotations

import hashlib

from deployer.artifacts.transfer import publication
from deployer.delta import Baseline, Delta, build_delta
from deployer.errors import DeployFailed, RemoteCommandError
from deployer.events import EventBus, Notice
from deployer.facts import HostFacts
from deployer.phases import DeployState, recovery_hint
from deployer.plan import DeployPlan, HostPlan
from deployer.release import Release
from deployer.remote import scripts
from deployer.runner import Runner, failures


def stage(
    plan: DeployPlan, release: Release, runner: Runner, state: DeployState, bus: EventBus
) -> None:
    """Stage the release on every host. Whatever a host sent, it ends with a tree checked
    against the MANIFEST inside the archive (see `scripts.stage`); what one host says never
    decides what another receives: a delta goes only to a host whose own current release is
    the baseline (its id and MANIFEST digest), linked from its own copy of that release."""
    shared = plan.playbook.shared
    delta = _delta_for(plan, release, state, bus)
    manifest_sha256 = hashlib.sha256(release.manifest_text().encode()).hexdigest()
    # `artifacts: {store: s3}`: each archive goes to the store once; hosts download it.
    store = publication(plan.playbook.artifacts, plan.playbook.application, bus)

    def send(hp: HostPlan, upload: Delta | None) -> None:
        fetch = None
        if store is not None:
            source = upload or release
            fetch = store.fetch(source.archive, source.archive_sha256)
        runner.step(
            hp.host,
            scripts.stage(
                hp.layout,
                plan.release_id,
                plan.run_id,
                archive=upload.archive if upload else release.archive,
                archive_size=upload.archive_size if upload else release.archive_size,
                archive_sha256=upload.archive_sha256 if upload else release.archive_sha256,
                host_files=hp.host_files,
                shared_dirs=shared.dirs,
                shared_files=shared.files,
                base=upload.base if upload else None,
                link_list=upload.link_list if upload else b"",
                fetch=fetch,
            ),
            progress=True,
        )

    def stage_one(hp: HostPlan) -> None:
        facts = state.facts[hp.name]
        if plan.release_id in facts.releases:
            # Staged before (a resumed run): reused only if it still verifies, else re-staged.
            templates = sum(1 for f in hp.host_files.files if not f.shared)
            check = scripts.verify_release(hp.layout, plan.release_id, manifest_sha256, templates)
            if scripts.MARK + "verified" in runner.step(hp.host, check).output.splitlines():
                state.staged.add(hp.name)
                return
            bus.emit(
                Notice(
                    level="warning",
                    text=f"{hp.name}: {hp.layout.release(plan.release_id)} exists but does not"
                    " verify against this release's MANIFEST; staging it again",
                )
            )
        upload = delta[1] if delta and _delta_fits(facts, delta[0]) else None
        try:
            send(hp, upload)
        except RemoteCommandError as exc:
            if upload is None or exc.remote_exit_code != scripts.EXIT_VERIFY:
                raise
            # Its copy of the base release was edited in place: never carried forward.
            bus.emit(
                Notice(
                    level="warning",
                    text=f"{hp.name}: files linked from {upload.base} do not match this"
                    " release's MANIFEST (edited in place?); sending the whole release",
                )
            )
            send(hp, None)
        state.staged.add(hp.name)

    failed = failures(runner.each(plan.hosts, stage_one))
    if store is not None:
        state.record["artifacts"] = store.record()
    if failed:
        raise DeployFailed(
            f"staging {plan.release_id} failed on {len(failed)} host(s); nothing was switched",
            failures=list(failed.values()),
            hint=recovery_hint(plan),
        )


def _delta_fits(facts: HostFacts, baseline: Baseline) -> bool:
    """This host's own word: its current release is the baseline's (id and MANIFEST digest),
    and that release is one of its own releases. The base must match the release-id pattern
    (checked when the facts were parsed and again by `scripts.stage`)."""
    return (
        facts.current == baseline.release_id
        and facts.manifest_digest == baseline.digest
        and baseline.release_id in facts.releases
    )


def _delta_for(
    plan: DeployPlan, release: Release, state: DeployState, bus: EventBus
) -> tuple[Baseline, Delta] | None:
    """A delta against the leader's current release, if that saves anything. The leader's
    MANIFEST content was checked against its own digest when parsed; which hosts get the
    delta is judged per host (`_delta_fits`), and each host verifies what it assembled."""
    leader = state.facts[plan.hosts[0].name]
    baseline = leader.baseline
    if baseline is None or baseline.release_id == plan.release_id:
        return None
    if not _delta_fits(leader, baseline):
        return None
    delta = build_delta(release, baseline, release.archive.parent)
    if delta.archive_size >= release.archive_size:
        return None
    users = [n for n, f in state.facts.items() if _delta_fits(f, baseline)]
    bus.emit(
        Notice(
            level="info",
            text=(
                f"delta upload to {len(users)} host(s): {len(delta.changed)} changed"
                f" file(s), {delta.linked} linked from {baseline.release_id}"
                f" ({delta.archive_size} of {release.archive_size} bytes)"
            ),
        )
    )
    return baseline, delta
