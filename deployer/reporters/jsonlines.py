"""One JSON object per event per line, for CI systems and other machines."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import IO, Any

from deployer.events import Event
from deployer.secrets import redact_event


def event_dict(event: Event) -> dict[str, Any]:
    return {"event": event.kind, **dataclasses.asdict(event)}


class JsonLinesReporter:
    def __init__(self, stream: IO[str], *, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        event = redact_event(event)  # whoever emitted it, no secret gets out
        data = event_dict(event)
        if not self.verbose:
            data.pop("command", None)
        with self._lock:
            self.stream.write(json.dumps(data, default=str) + "\n")
            self.stream.flush()
