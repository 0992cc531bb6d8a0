"""One run's use of the artifact store: each archive the stage step needs is uploaded once,
on first need (a host on the leader's baseline needs only the delta), then every host gets
a presigned URL (`S3Store.fetch`). Emits events; never prints."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from deployer.artifacts.fetch import Fetch
from deployer.artifacts.store import ArtifactStoreError, Published, S3Store, open_store
from deployer.config.model import ArtifactStore
from deployer.events import EventBus, Notice


class Publication:
    """The archives of one run in the store, uploaded lazily and at most once each."""

    def __init__(self, store: S3Store, application: str, bus: EventBus) -> None:
        self.store = store
        self.application = application
        self.bus = bus
        self._lock = threading.Lock()
        self._done: dict[str, Published | ArtifactStoreError] = {}

    def fetch(self, archive: Path, sha256: str) -> Fetch:
        """What one host runs to download `archive`: uploads it first if no host has needed
        it yet (the other hosts wait for that upload instead of starting their own)."""
        with self._lock:
            outcome = self._done.get(sha256)
            if outcome is None:
                key = self.store.key(self.application, sha256)
                try:
                    outcome = self.store.put(archive, key, sha256)
                except ArtifactStoreError as exc:
                    outcome = exc
                self._done[sha256] = outcome
                if isinstance(outcome, Published):
                    self.bus.emit(
                        Notice(
                            level="info",
                            text=f"artifact store: {outcome.size} bytes uploaded to"
                            f" {self.store.location(key)} in {outcome.seconds:.1f} s",
                        )
                    )
        if isinstance(outcome, ArtifactStoreError):
            raise outcome
        return self.store.fetch(outcome.key)

    def record(self) -> dict[str, Any]:
        """For the run record: where the archives went and what this machine sent there."""
        return {
            "store": "s3",
            "uploaded_bytes": self.store.uploaded_bytes,
            "objects": [
                self.store.location(p.key) for p in self._done.values() if isinstance(p, Published)
            ],
        }


def publication(settings: ArtifactStore, application: str, bus: EventBus) -> Publication | None:
    """None for `store: ssh` (the archive travels in each host's stage session)."""
    if settings.store != "s3":
        return None
    return Publication(open_store(settings), application, bus)
