"""The last step of every run on every host (deploy, rollback, blue-green, canary): record
the outcome, release the lock, then clean up, best effort. Once the rollout has decided where
each host is, nothing here may change that verdict: a host whose cleanup could not remove
something gets a warning that names the path, the cause and the fix, and the next deploy
retries; a host whose finish failed outright is reported, never marked as failed.

Never raises for a host; a first Ctrl-C/SIGTERM waits for the finishes in flight (they take
seconds, and stopping one part-way is what leaves a lock behind)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import DeployerError
from deployer.events import EventBus, Notice
from deployer.plan import HostPlan
from deployer.remote.scripts import MARK
from deployer.remote.shell import Script
from deployer.runner import Runner
from deployer.secrets import redact


@dataclass(frozen=True)
class CleanupWarning:
    """Something a finish could not remove: `owner` is who owns the first entry in it that
    the deploy user does not (empty when all of it is ours)."""

    host: str
    path: str
    owner: str
    cause: str

    def text(self, env: str, user: str | None) -> str:
        who = f" (files owned by {self.owner})" if self.owner else ""
        fix = (
            f"run `sudo chown -R {user or '$DEPLOY_USER'}: {self.path}` on {self.host}, or set"
            " `cleanup: {sudo: true}` in the playbook if the deploy user has passwordless sudo"
            if self.owner
            else "check the path's permissions on the host"
        )
        return (
            f"{self.host}: cleanup could not remove {self.path}{who}: {self.cause or 'unknown'};"
            f" the deploy itself succeeded. To fix: {fix}; the next deploy to {env} retries"
        )

    def to_dict(self) -> dict[str, str]:
        return {"host": self.host, "path": self.path, "owner": self.owner, "cause": self.cause}


@dataclass
class FinishReport:
    warnings: list[CleanupWarning] = field(default_factory=list)
    failed: dict[str, DeployerError] = field(default_factory=dict)  # finish itself failed

    def record(self) -> dict[str, Any]:
        """What the run record and `--format json` carry."""
        out: dict[str, Any] = {}
        if self.warnings:
            out["cleanup_warnings"] = [w.to_dict() for w in self.warnings]
        if self.failed:
            out["finish_failed"] = {name: redact(str(e)) for name, e in self.failed.items()}
        return out


def parse_cleanup(host: str, output: str) -> list[CleanupWarning]:
    """The `@@cleanup PATH<TAB>OWNER<TAB>CAUSE` lines a finish script printed. Pure."""
    warnings = []
    prefix = MARK + "cleanup "
    for line in output.splitlines():
        if line.startswith(prefix):
            path, owner, cause = (line[len(prefix) :].split("\t", 2) + ["", ""])[:3]
            warnings.append(CleanupWarning(host, path, owner.strip(), cause.strip()))
    return warnings


def finish_hosts(
    runner: Runner,
    bus: EventBus,
    env: str,
    hosts: Sequence[HostPlan],
    script_for: Callable[[HostPlan], Script],
) -> FinishReport:
    """Run each host's finish script; report, never raise, per host."""
    report = FinishReport()

    def one(hp: HostPlan) -> list[CleanupWarning]:
        return parse_cleanup(hp.name, runner.step(hp.host, script_for(hp)).output)

    for name, outcome in runner.each(hosts, one, shield=True).items():
        if isinstance(outcome, DeployerError):
            report.failed[name] = outcome
        else:
            report.warnings.extend(outcome)
    users = {hp.name: hp.host.user for hp in hosts}
    for warning in report.warnings:
        bus.emit(Notice(level="warning", text=warning.text(env, users.get(warning.host))))
    for name, error in report.failed.items():
        bus.emit(Notice(level="warning", text=finish_failed_text(name, error, env)))
    return report


def finish_failed_text(host: str, error: DeployerError, env: str) -> str:
    return (
        f"{host}: its finish step failed ({error}); where it stands is unchanged, but its run"
        f" record and lock may not have been written and released: `invoke status --env {env}`"
        f" shows the lock; `invoke unlock --env {env}` clears it once this run has ended"
    )
