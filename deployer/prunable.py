"""Which releases a deploy would prune on a host, and which of those hold a directory the
deploy user cannot empty (the checklist's `cleanup` item). Only the prune candidates are
searched, in one small step after prepare and only where there are any: a host that keeps
many big releases does not walk them all on every deploy. Never deletes anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from deployer.errors import DeployerError
from deployer.events import Notice
from deployer.facts import HostFacts, parse_facts
from deployer.history import Record, releases_to_prune
from deployer.plan import HostPlan
from deployer.remote import scripts
from deployer.runner import Runner

__all__ = ["find_unremovable", "prune_candidates"]


def prune_candidates(facts: HostFacts, release: str, keep: int) -> list[str]:
    """The releases a successful deploy of `release` would prune here, as its finish decides
    them (`phases.finish_ok`): from these facts' releases and history plus that deploy."""
    deployed = Record(
        time="", user="", release=release, action="deploy", result="success", run_id=""
    )
    present = sorted({*facts.releases, release})
    history = [*facts.history, deployed]
    return releases_to_prune(present, history, keep=keep, current=release)


def find_unremovable(
    runner: Runner,
    hosts: Sequence[HostPlan],
    facts: dict[str, HostFacts],
    *,
    release: str,
    keep: int,
) -> None:
    """Fill in `unremovable` in `facts` (host -> its prepare facts) for a deploy of `release`
    keeping `keep`: one step on each host that has prune candidates, all at once. A host
    that fails it keeps its facts and is named in a warning: this is a look ahead, and
    pruning reports what it cannot delete anyway."""
    candidates = {hp.name: prune_candidates(facts[hp.name], release, keep) for hp in hosts}
    asked = [hp for hp in hosts if candidates[hp.name]]
    found = runner.each(
        asked,
        lambda hp: (
            parse_facts(
                runner.step(hp.host, scripts.unremovable(hp.layout, candidates[hp.name])).output
            ).unremovable
        ),
    )
    for name, result in found.items():
        if isinstance(result, DeployerError):
            text = f"{name}: could not look for releases pruning cannot delete: {result.message}"
            runner.bus.emit(Notice(level="warning", text=text))
        else:
            facts[name] = replace(facts[name], unremovable=result)
