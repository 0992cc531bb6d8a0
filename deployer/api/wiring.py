"""How a run is wired: `Options` (transport, reporters), the event bus with its reporters and
run record, the playbook's webhook for the length of a run, the runner, and the strategy's
own plans (blue-green traffic, drain), all built from a loaded project."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deployer.api.project import PLACEHOLDER_RELEASE, Loaded
from deployer.errors import ConfigError
from deployer.events import EventBus, Subscriber
from deployer.plan import DeployPlan, HostPlan
from deployer.remote.ssh import SSHTransport
from deployer.remote.transport import Transport
from deployer.reporters import RunRecorder
from deployer.runner import Runner, new_run_id
from deployer.strategies.drain import DrainPlan, plan_drain

if TYPE_CHECKING:
    from deployer.strategies.bluegreen.traffic import TrafficPlan


@dataclass(frozen=True)
class Options:
    """How to connect and whom to tell."""

    reporters: Sequence[Subscriber] = ()
    accept_new_host_keys: bool = False
    transport: Transport | None = None  # tests may inject one; default SSH


def event_bus(options: Options, record_dir: Path | None) -> EventBus:
    bus = EventBus()
    for reporter in options.reporters:
        bus.subscribe(reporter)
    if record_dir is not None:
        bus.subscribe(RunRecorder(record_dir))
    return bus


@contextlib.contextmanager
def notifying(loaded: Loaded, bus: EventBus) -> Iterator[None]:
    """Subscribe the playbook's webhook for the length of a run, then flush it (bounded)."""
    notify = loaded.playbook.notify
    if notify.webhook_url_env is None:
        yield
        return
    url = os.environ.get(notify.webhook_url_env)
    if not url:
        where = notify.where
        raise ConfigError(
            f"environment variable {notify.webhook_url_env} is not set",
            file=where.file if where else None,
            line=where.line if where else None,
            key_path="notify.webhook.url_env",
            hint=f"export {notify.webhook_url_env}=<webhook URL> (in CI, from its secret store)",
        )
    from deployer.reporters.webhook import WebhookReporter  # only with `notify.webhook`

    webhook = WebhookReporter(url, timeout=notify.timeout)
    bus.subscribe(webhook)
    try:
        yield
    finally:
        webhook.close(timeout=10)


def make_runner(loaded: Loaded, options: Options, bus: EventBus) -> Runner:
    conn = loaded.playbook.connection
    transport = options.transport or SSHTransport(
        connect_timeout=conn.connect_timeout, accept_new_host_keys=options.accept_new_host_keys
    )
    return Runner(transport, bus, parallel=conn.parallel, command_timeout=conn.command_timeout)


def traffic_plan(loaded: Loaded, plan: DeployPlan) -> TrafficPlan | None:
    """Blue-green: the colors, the load balancer(s) and their rendered configs (pure)."""
    if loaded.playbook.strategy.kind != "blue_green":
        return None
    from deployer.strategies.bluegreen.traffic import plan_traffic

    return plan_traffic(plan, loaded.inventory, loaded.project.templates)


def drain_plan(loaded: Loaded, plan: DeployPlan) -> tuple[DeployPlan, DrainPlan | None]:
    """With strategy.drain: the app hosts' plan (load balancers set aside) and the drain
    plan (pure); else the plan as it is."""
    found = plan_drain(plan, loaded.inventory, loaded.project.templates)
    return found if found else (plan, None)


def read_only_plans(loaded: Loaded) -> tuple[HostPlan, ...]:
    return loaded.plan(PLACEHOLDER_RELEASE, new_run_id(), render_files=False).hosts
