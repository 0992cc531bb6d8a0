"""The checklist's `cleanup` item searches only the releases a deploy would prune: the step
that looks, which hosts get it, and what the item then says. No hosts: a recording transport."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from deployer import preflight as pf
from deployer.config.model import Host
from deployer.events import EventBus
from deployer.facts import Unremovable
from deployer.history import Record
from deployer.locking import lock_fleet
from deployer.preflight.fleet import check_cleanup
from deployer.prunable import prune_candidates
from deployer.remote import scripts
from deployer.remote.recording import RecordingTransport, default_responder, prepare_output
from deployer.remote.shell import Script
from deployer.remote.transport import Result
from deployer.runner import Runner
from tests.unit.planning import plan_for

INVENTORY = """
all:
  hosts:
    h1: {ansible_host: 127.0.0.2}
    h2: {ansible_host: 127.0.0.3}
"""

PLAYBOOK = "application: app\ndeploy_to: /srv/app\nsource: {path: src}\nkeep_releases: 2\n"


def deployed(*releases: str) -> list[str]:
    return [
        Record(time="t", user="u", release=r, action="deploy", result="success", run_id=r).to_json()
        for r in releases
    ]


def test_the_candidates_are_what_the_next_deploys_finish_prunes() -> None:
    from deployer.facts import parse_facts

    facts = parse_facts(
        prepare_output(
            current="/srv/app/releases/R4",
            releases=["R1", "R2", "R3", "R4"],
            history=deployed("R1", "R2", "R3", "R4"),
        )
    )
    # keep 2 after deploying R5: R5, and R4 (its rollback target) stay.
    assert prune_candidates(facts, "R5", keep=2) == ["R1", "R2", "R3"]
    assert prune_candidates(facts, "R5", keep=4) == ["R1"]
    assert prune_candidates(facts, "R5", keep=5) == []


def test_the_search_names_only_the_candidates() -> None:
    script = scripts.unremovable(scripts.Layout("/srv/app"), ["R1", "it's"])
    assert script.step == "unremovable"
    assert script.lines == (
        'live="$(readlink /srv/app/current || true)"',
        "for release in /srv/app/releases/R1 '/srv/app/releases/it'\"'\"'s'; do",
        '  [ -d "$release" ] && [ "$release" != "$live" ] || continue',
        '  found=$(find "$release" -mindepth 1 -type d ! -user "$(id -u)" ! -empty'
        " -printf '%u\\t%P' -quit 2>/dev/null || true)",
        "  if [ -n \"$found\" ]; then printf '%s %s\\n' @@unremovable"
        ' "$(printf \'%s\\t%s\' "${release##*/}" "$found" | base64 -w0)"; fi',
        "done",
    )
    assert "unremovable" not in scripts.prepare(scripts.Layout("/srv/app"), lock_info=None).render()


def test_a_deploy_searches_its_prune_candidates_and_the_cleanup_item_warns(
    tmp_path: Path,
) -> None:
    plan, _ = plan_for(INVENTORY, PLAYBOOK, tmp_path, "R5")
    many = ["R1", "R2", "R3", "R4"]

    def responder(host: Host, script: Script) -> Result:
        if script.step == "prepare" and host.name == "h1":  # keeps many releases
            return Result(
                0,
                prepare_output(
                    current="/srv/app/releases/R4", releases=many, history=deployed(*many)
                ),
            )
        if script.step == "prepare":  # one release: nothing to prune after R5
            return Result(
                0,
                prepare_output(
                    current="/srv/app/releases/R4", releases=["R4"], history=deployed("R4")
                ),
            )
        if script.step == "unremovable":
            entry = base64.b64encode(b"R1\troot\t__pycache__").decode()
            return Result(0, f"@@unremovable {entry}\n")
        return default_responder(host, script)

    transport = RecordingTransport(responder=responder)
    runner = Runner(transport, EventBus(), parallel=2)
    try:
        locked = lock_fleet(runner, plan.hosts, "run1", "deploy", "R5", keep_releases=2)
    finally:
        runner.close()
    assert transport.steps("h1") == ["prepare", "unremovable"]
    assert transport.steps("h2") == ["prepare"]  # no candidates: no search
    search = next(s for h, s in transport.calls if s.step == "unremovable").render()
    assert "releases/R1 /srv/app/releases/R2 /srv/app/releases/R3; do" in search
    assert "R4" not in search  # kept: never walked
    assert locked.facts["h1"].unremovable == (Unremovable("R1", "root", "__pycache__"),)
    assert locked.facts["h2"].unremovable == ()
    fleet = pf.FleetFacts(hosts=("h1", "h2"), roots={"h1": "/srv/app"}, facts=locked.facts)
    item = check_cleanup(pf.LocalFacts(env="test", release_id="R5"), fleet)
    assert item.status == "warn"
    assert item.detail == "h1: /srv/app/releases/R1/__pycache__ is owned by root"


def test_ctrl_c_during_the_search_gives_the_locks_back(tmp_path: Path) -> None:
    plan, _ = plan_for(INVENTORY, PLAYBOOK, tmp_path, "R5")
    many = ["R1", "R2", "R3", "R4"]

    def responder(host: Host, script: Script) -> Result:
        if script.step == "prepare":
            facts = prepare_output(
                current="/srv/app/releases/R4", releases=many, history=deployed(*many)
            )
            return Result(0, facts)
        if script.step == "unremovable":
            raise KeyboardInterrupt
        return default_responder(host, script)

    transport = RecordingTransport(responder=responder)
    runner = Runner(transport, EventBus(), parallel=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            lock_fleet(runner, plan.hosts, "run1", "deploy", "R5", keep_releases=2)
    finally:
        runner.close()
    assert sorted(h for h, s in transport.calls if s.step == "unlock") == ["h1", "h2"]
