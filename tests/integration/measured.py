"""Traffic through nginx while the fleet changes, shared by the zero-downtime, drain and
metrics tests: the client warmed up around an operation, a short sample after one, the
paging client Prometheus counts, and the latency canary they deploy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from deployer.events import Event
from tests.integration.client import Client
from tests.integration.helpers import Project
from tests.integration.nginx import Nginx
from tests.integration.prometheus import PagesClient

WARM_UP = 20  # responses before the operation starts, so "before" is really measured
AFTER = 20  # responses after it ends

# A canary judged on latency by its own probes: one host, then half, 3 s bakes.
LATENCY_CANARY: dict[str, object] = {
    "kind": "canary",
    "canary": {
        "steps": [1, "50%"],
        "bake": 3,
        "analysis": {
            "url": "http://{{ app_listen }}:{{ app_port }}/",
            "interval": 0.1,
            "min_samples": 3,
            "latency_floor_ms": 250,
        },
    },
}


def new_version(project: Project, note: str) -> None:
    (project.app / "VERSION_NOTE").write_text(note + "\n")


def run_measured(client: Client, operation: Callable[[list[Event]], object]) -> list[Event]:
    """Warm the client up, run `operation(events)` and let the client see its outcome."""
    events: list[Event] = []
    client.start()
    try:
        client.wait_for(WARM_UP)
        operation(events)
        client.wait_for(len(client.responses) + AFTER)
    finally:
        client.stop()
    return events


def sample(nginx: Nginx, count: int = 12) -> Client:
    """`count` GETs and POSTs through nginx (after an operation), the client stopped."""
    with Client(nginx.url + "/health", post_every=2, max_requests=40) as client:
        client.wait_for(count)
    return client


@contextlib.contextmanager
def pages_traffic(nginx: Nginx) -> Iterator[PagesClient]:
    """Requests to several pages through nginx, for Prometheus to count; 50 sent first."""
    client = PagesClient(nginx.url, interval=0.01, max_seconds=180)
    with client:
        client.wait_for(50)
        yield client
