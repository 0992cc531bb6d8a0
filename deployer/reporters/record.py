"""The local run record: every run leaves `<dir>/<run_id>.json` with each host's steps
(timing, result, output tail), the batches, health results and the outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from deployer.events import (
    BatchFinished,
    CanaryAnalyzed,
    Event,
    HealthChecked,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
    WatchChecked,
)
from deployer.reporters.jsonlines import event_dict
from deployer.secrets import redact_event


class RunRecorder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.record: dict[str, Any] = {"hosts": {}, "batches": [], "notices": []}
        self.path: Path | None = None

    def __call__(self, event: Event) -> None:
        event = redact_event(event)  # whoever emitted it, no secret gets out
        rec = self.record
        if isinstance(event, RunStarted):
            rec.update(
                source=event.source,
                built_at=event.built_at,
                ok=None,  # until RunFinished: a record without an outcome is a run that died
                run_id=event.run_id,
                action=event.action,
                env=event.env,
                release=event.release,
                started=event.at,
                batches_planned=event.batches,
            )
            for host in event.hosts:
                rec["hosts"].setdefault(host, {"steps": []})
            self.write()  # so that even a run killed outright leaves a record to resume
        elif isinstance(event, StepFinished):
            rec["hosts"].setdefault(event.host, {"steps": []})["steps"].append(
                {
                    "step": event.step,
                    "ok": event.ok,
                    "duration": round(event.duration, 3),
                    "output": event.output,
                    "error": event.error,
                    "at": event.at,
                }
            )
        elif isinstance(event, HealthChecked):
            rec["hosts"].setdefault(event.host, {"steps": []}).setdefault("health", []).append(
                {"ok": event.ok, "attempts": event.attempts, "detail": event.detail}
            )
        elif isinstance(event, BatchFinished):
            rec["batches"].append(event_dict(event))
        elif isinstance(event, CanaryAnalyzed):  # why each step was promoted or stopped
            rec.setdefault("canary", []).append(event_dict(event))
        elif isinstance(event, WatchChecked):  # each look of the post-deploy watch
            rec.setdefault("watch", []).append(event_dict(event))
        elif isinstance(event, Notice):
            rec["notices"].append({"level": event.level, "text": event.text})
        elif isinstance(event, RunFinished):
            rec.update(
                ok=event.ok,
                duration=round(event.duration, 3),
                releases=dict(event.releases),
                message=event.message,
                finished=event.at,
                **dict(event.extra),
            )
            self.write()

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        run_id = self.record.get("run_id", "unknown")
        path = self.directory / f"{run_id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.record, indent=2, default=str))
        os.replace(tmp, path)
        self.path = path
        return path
