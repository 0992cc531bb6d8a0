"""Pointing traffic at a color: every load balancer in turn (`remote/lb.py`'s switch script,
then an optional probe through it), and back again on the ones already switched when one
fails; the `traffic` history record every switch leaves. Emits events; never prints."""

from __future__ import annotations

from collections.abc import Sequence

from deployer.errors import DeployerError, DeployFailed
from deployer.events import EventBus, Notice
from deployer.facts import HostFacts
from deployer.history import Record
from deployer.plan import HostPlan
from deployer.probe import check_host
from deployer.remote.shell import Script
from deployer.remote.transport import Result
from deployer.runner import Runner, operator, utc_now
from deployer.strategies.bluegreen.traffic import TRAFFIC, LbPlan, TrafficPlan


def color_release(
    traffic: TrafficPlan, color: str | None, facts: dict[str, HostFacts]
) -> str | None:
    """The one release every host of `color` runs, or None (no color, or mixed releases)."""
    if color is None:
        return None
    found = {facts[n].current for n in traffic.members[color] if n in facts}
    return found.pop() if len(found) == 1 else None


def traffic_record(run_id: str, color: str, release: str | None, previous: str | None) -> Record:
    """The history record of a switch to `color`: load balancers and app hosts keep it."""
    return Record(
        time=utc_now(),
        user=operator(),
        release=release or "",
        action=TRAFFIC,
        result="success",
        run_id=run_id,
        previous=previous,
        color=color,
    )


def switch_traffic(
    traffic: TrafficPlan,
    runner: Runner,
    bus: EventBus,
    run_id: str,
    *,
    to: str,
    release: str | None,
    back: str | None,
    previous_release: str | None = None,
) -> None:
    """Point every load balancer at color `to`, one at a time. When one fails, those
    already switched are pointed back at `back` (best effort) and DeployFailed is raised."""
    record = traffic_record(run_id, to, release, previous_release).to_json()
    done: list[str] = []
    for lb in traffic.lbs:
        script = lb.switch_script(run_id, to, release, record)
        switched, failed = _switch_one(runner, lb, script, release)
        if switched:
            done.append(lb.name)
        if failed is not None:
            what = (
                f"it was switched but does not serve {release}"
                if switched
                else "the load balancer keeps its previous config"
            )
            stuck = _switch_back(traffic, runner, bus, run_id, done, back, previous_release)
            where = _where(done, stuck, back)
            raise DeployFailed(
                f"switching traffic to {to} failed on {lb.name}: {what}{where}",
                failures=[failed],
                hint=f"fix the load balancer config or template, then re-run the deploy"
                f" (look at {lb.dest} and its validate command on {lb.name})",
            )
        bus.emit(Notice(level="info", text=f"{lb.name}: traffic now goes to {to}"))


def _switch_one(
    runner: Runner, lb: LbPlan, script: Script, release: str | None
) -> tuple[bool, DeployerError | None]:
    """One load balancer's switch script, then its verify probe: whether its config was
    switched, and what failed (None: it serves `release`)."""
    outcome = _run_on(runner, lb.hp, script)
    if isinstance(outcome, DeployerError):
        return False, outcome
    return True, _verify(runner, lb, release)


def _verify(runner: Runner, lb: LbPlan, release: str | None) -> None | DeployerError:
    """After a reload: ask the load balancer itself until the new release answers (a reload
    is a signal; old workers may accept for a moment more)."""
    if lb.verify is None:
        return None
    hp, health = lb.verify
    expect = release if health.http and health.http.expect_version else None
    outcome = runner.each([hp], lambda h: check_host(runner, health, h, expect))[hp.name]
    return outcome if isinstance(outcome, DeployerError) else None


def _run_on(runner: Runner, hp: HostPlan, script: Script) -> Result | DeployerError:
    # Through `each`, so that Ctrl-C waits for a load balancer switch in flight.
    return runner.each([hp], lambda h: runner.step(h.host, script))[hp.name]


def _switch_back(
    traffic: TrafficPlan,
    runner: Runner,
    bus: EventBus,
    run_id: str,
    done: Sequence[str],
    back: str | None,
    release: str | None,
) -> list[str]:
    """Point the load balancers in `done` back at `back`, each checked through its own
    `verify` probe like a switch forward; returns those that failed either."""
    if not done or back is None:
        return []
    record = traffic_record(run_id, back, release, None).to_json()
    stuck: list[str] = []
    for lb in traffic.lbs:
        if lb.name not in done:
            continue
        script = lb.switch_script(run_id, back, release, record)
        switched, failed = _switch_one(runner, lb, script, release)
        if failed is not None:
            stuck.append(lb.name)
            what = release or f"the {back} color"
            problem = f"it does not serve {what}: {failed}" if switched else str(failed)
            bus.emit(Notice(level="error", text=f"{lb.name}: pointing back at {back}: {problem}"))
    return stuck


def _where(done: Sequence[str], stuck: Sequence[str], back: str | None) -> str:
    """The DeployFailed message's account of the load balancers already switched."""
    if not done or back is None:
        return ""
    ok = [name for name in done if name not in stuck]
    parts = [f"{', '.join(ok)} pointed back at {back}"] if ok else []
    if stuck:
        parts.append(
            f"{', '.join(stuck)} could not be pointed back at {back} and may still send"
            " traffic to the new color (see the errors above)"
        )
    return "; " + "; ".join(parts)
