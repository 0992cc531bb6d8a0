"""Draining, done: take hosts out of every load balancer (config marked down, validated,
reloaded, in-flight requests waited out), let the caller restart them, put them back and
confirm the load balancer serves. It must never leave a load balancer with hosts marked
down once the block is over, and never let fewer than the floor serve."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from deployer.config.model import Health
from deployer.errors import DeployerError, DeployFailed
from deployer.events import EventBus, Notice
from deployer.plan import HostPlan
from deployer.probe import check_host
from deployer.remote import drain as drain_scripts
from deployer.remote.scripts import MARK
from deployer.remote.transport import Result
from deployer.runner import Runner, failures
from deployer.strategies.drain import DrainLb, DrainPlan, keeps_floor


class DrainRefused(DeployFailed):
    """A load balancer refused the config that takes hosts out: nothing was restarted."""


class Drainer:
    """Tracks which app hosts are out of the load balancers now (`out`); `out_of_service`
    takes more out for the length of a block. Without a drain plan it does nothing."""

    def __init__(self, plan: DrainPlan | None, runner: Runner, bus: EventBus, run_id: str):
        self.plan = plan
        self.runner = runner
        self.bus = bus
        self.run_id = run_id
        self.out: frozenset[str] = frozenset()

    @contextlib.contextmanager
    def out_of_service(self, hosts: Sequence[str], *, required: bool = True) -> Iterator[bool]:
        """Drain `hosts` for the block; yields whether they were drained. Not drained: no
        load balancer, already out, or the floor would be crossed (then they restart in
        service, as without drain). A load balancer refusing the drained config raises
        DeployFailed before the block runs when `required`, else is a warning (a revert
        must happen anyway). The hosts come back when the block ends, however it ends."""
        plan = self.plan
        new = [h for h in hosts if h not in self.out]
        if plan is None or not new:
            yield False
            return
        serving = len(plan.app_hosts) - len(self.out)
        floor = plan.settings.min_in_service
        if not keeps_floor(serving, len(new), floor):
            self._say(
                "warning",
                f"{', '.join(new)} restart(s) in service: draining would leave"
                f" {max(serving - len(new), 0)} in service (min_in_service {floor})",
            )
            yield False
            return
        before = self.out
        try:
            self._apply(before | frozenset(new), f"drains {', '.join(new)}", draining=True)
        except DeployerError as exc:
            if required:
                raise
            self._say("warning", f"{', '.join(new)} restart(s) in service: {exc}")
            yield False
            return
        except BaseException:
            # Interrupted (Ctrl-C) while draining: some load balancers may already have the
            # hosts down, so every one goes back to `before` before the interrupt goes on.
            self._put_back(before, new, failed_already=True)
            raise
        ok = False
        try:
            yield True
            ok = True
        finally:
            self._put_back(before, new, failed_already=not ok)

    def _put_back(
        self, before: frozenset[str], new: Sequence[str], *, failed_already: bool
    ) -> None:
        try:
            self._apply(before, f"puts {', '.join(new)} back", draining=False)
        except DeployerError as exc:
            if not failed_already:
                raise
            # The block failed already: that error is the one to report.
            self._say("error", f"putting {', '.join(new)} back failed: {exc}")

    def _apply(self, down: frozenset[str], what: str, *, draining: bool) -> None:
        """Every load balancer to the config with `down` marked down, in parallel. When one
        refuses, those already changed go back to the current set: all or nothing."""
        assert self.plan is not None
        lbs = self.plan.lbs
        results = self.runner.each(lbs, lambda lb: self._set(lb, down, what, draining))
        bad = failures(results)
        if bad:
            changed = [lb for lb in lbs if lb.name not in bad]
            if changed:
                undo = f"goes back after {', '.join(sorted(bad))} refused"
                back = self.runner.each(changed, lambda lb: self._set(lb, self.out, undo, False))
                for name, err in failures(back).items():
                    self._say("error", f"{name}: restoring the previous config: {err}")
            verb = "draining" if draining else "putting back"
            raise (DrainRefused if draining else DeployFailed)(
                f"{verb} failed on {', '.join(sorted(bad))}: the config that {what} was"
                " refused; the load balancer keeps its previous config"
                + ("; no host of this batch was restarted" if draining else ""),
                failures=list(bad.values()),
                hint="fix the load balancer template (strategy.drain.load_balancer) or the"
                " load balancer, then re-run",
            )
        self.out = down
        if not draining:
            self._confirm(lbs)

    def _set(self, lb: DrainLb, down: frozenset[str], what: str, draining: bool) -> Result:
        assert self.plan is not None
        s = self.plan.settings
        settle: drain_scripts.Settle = s.wait if draining else "none"
        if not draining and s.wait == "nginx":
            settle = "nginx"  # back only once every worker runs the config that has them
        script = drain_scripts.set_upstream(
            self.run_id,
            dest=lb.dest,
            config=lb.config(down),
            validate=lb.validate,
            reload=lb.reload,
            settle=settle,
            timeout=s.timeout,
            what=what,
            step="drain" if draining else "undrain",
        )
        result = self.runner.step(lb.hp.host, script)
        waited = _marker(result.output, "settled")
        if _marker(result.output, drain_scripts.TIMED_OUT) is not None:
            self._say(
                "warning",
                f"{lb.name}: requests still in flight after {s.timeout:g}s (drain.timeout);"
                f" going on: the config {what}",
            )
        else:
            self._say(
                "info",
                f"{lb.name}: the config {what}"
                + (f" (in-flight requests done after {waited}s)" if waited else ""),
            )
        return result

    def _confirm(self, lbs: Sequence[DrainLb]) -> None:
        """Ask each load balancer (verify_url) until it answers healthy again."""
        for lb in lbs:
            if lb.verify is None:
                continue
            hp, health = lb.verify

            def ask(h: HostPlan, health: Health = health) -> None:
                check_host(self.runner, health, h, None)

            if bad := failures(self.runner.each([hp], ask)):
                raise DeployFailed(
                    f"{lb.name} does not answer healthy after putting hosts back",
                    failures=list(bad.values()),
                    hint=f"look at the load balancer on {lb.name} ({lb.dest})",
                )

    def _say(self, level: str, text: str) -> None:
        self.bus.emit(Notice(level=level, text=f"drain: {text}"))


def _marker(output: str, name: str) -> str | None:
    """The rest of the line after `@@<name>` in a script's output, or None."""
    for line in output.splitlines():
        if line.startswith(MARK + name):
            return line[len(MARK + name) :].strip()
    return None
