"""Health-checking one host as the playbook says: HTTP through the host's own SSH connection
(or from this machine), and/or a remote command. Raises HealthCheckFailed with the last
response when the host does not become healthy in time."""

from __future__ import annotations

import socket

from deployer.config.model import Health
from deployer.errors import DeployerError
from deployer.events import HealthChecked
from deployer.health import Outcome, Probe, http_probe, parse_url, wait_until_healthy
from deployer.plan import HostPlan
from deployer.remote import scripts
from deployer.remote.transport import Channel
from deployer.runner import Runner, output_tail


class HealthCheckFailed(DeployerError):
    def __init__(self, host: str, outcome: Outcome) -> None:
        self.host = host
        self.outcome = outcome
        last = outcome.last.detail
        if outcome.last.ok and outcome.last_failure:  # flapping: say why it failed, too
            last = f"{last}; last failure: {outcome.last_failure.detail}"
        super().__init__(
            f"{host}: step 'health' failed after {outcome.attempts} probe(s); last: {last}"
        )


def probe_once(runner: Runner, health: Health, hp: HostPlan, expect_version: str | None) -> Probe:
    """One probe of every configured check; the first failure is the answer."""
    result = Probe(True, "no health check configured")
    if hp.health_url and health.http:
        target = parse_url(hp.health_url)
        http = health.http

        def connect() -> Channel | socket.socket:
            if http.via == "local":
                return socket.create_connection((target.address, target.port), health.timeout)
            return runner.transport.open_tcp(
                hp.host, target.address, target.port, timeout=health.timeout
            )

        result = http_probe(
            connect, target, expect_status=http.expect_status, expect_version=expect_version
        )
        if not result.ok:
            return result
    if hp.health_command:
        try:
            run = runner.transport.run(
                hp.host,
                scripts.check_command(hp.layout, hp.health_command, hp.env),
                timeout=health.timeout,
            )
        except DeployerError as exc:
            return Probe(False, str(exc))
        detail = output_tail(run.output, 5) or f"exit {run.exit_code}"
        result = Probe(run.ok, f"command exited {run.exit_code}: {detail}")
    return result


def check_host(runner: Runner, health: Health, hp: HostPlan, expect_version: str | None) -> Outcome:
    if not (hp.health_url or hp.health_command):
        return Outcome(True, 0, Probe(True, "no health check configured"))
    outcome = wait_until_healthy(
        lambda: probe_once(runner, health, hp, expect_version),
        successes=health.successes,
        interval=health.interval,
        deadline=health.deadline,
        cancelled=runner.cancelled.is_set,
        sleep=runner.cancelled.wait,  # Ctrl-C ends the wait between probes at once
    )
    runner.bus.emit(
        HealthChecked(
            host=hp.name, ok=outcome.ok, attempts=outcome.attempts, detail=outcome.last.detail
        )
    )
    if not outcome.ok:
        raise HealthCheckFailed(hp.name, outcome)
    return outcome
