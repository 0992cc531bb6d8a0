"""Events the orchestrator emits and reporters consume. The orchestrator never prints; the
terminal, JSON-lines and run-record reporters subscribe to an `EventBus` instead."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class RunStarted(Event):
    run_id: str
    action: str  # deploy | rollback | ...
    env: str
    release: str | None
    hosts: Sequence[str]
    batches: Sequence[Sequence[str]] = ()
    source: str = ""  # commit or dir digest the release was built from (for --resume)
    built_at: int | None = None  # release time, epoch seconds (for --resume)


@dataclass(frozen=True)
class StepStarted(Event):
    host: str
    step: str
    command: str = ""  # the exact script (never contains secrets); shown with -v


@dataclass(frozen=True)
class StepFinished(Event):
    host: str
    step: str
    ok: bool
    duration: float
    output: str = ""  # tail of the step's output
    error: str | None = None


@dataclass(frozen=True)
class UploadProgress(Event):
    host: str
    sent: int
    total: int


@dataclass(frozen=True)
class BatchStarted(Event):
    index: int  # 1-based
    total: int
    hosts: Sequence[str]


@dataclass(frozen=True)
class BatchFinished(Event):
    index: int
    total: int
    healthy: Sequence[str]
    failed: Sequence[str]
    within_budget: bool


@dataclass(frozen=True)
class HealthChecked(Event):
    host: str
    ok: bool
    attempts: int
    detail: str


@dataclass(frozen=True)
class CanaryGroup:
    """One side of a canary comparison, as measured during the bake."""

    hosts: Sequence[str]  # the hosts sampled
    samples: int
    errors: int  # no answer in time, or HTTP 5xx
    error_rate: float | None  # percent; None without samples
    p50_ms: float | None  # of answered requests
    p95_ms: float | None


@dataclass(frozen=True)
class CanaryRule:
    name: str  # e.g. "p95 latency"
    canary: str  # measured values, formatted for people
    baseline: str
    limit: str  # the rule as applied, e.g. "<= 1.5 x baseline (30 ms)"
    ok: bool | None  # None: not checked (no baseline to compare with)


@dataclass(frozen=True)
class CanaryAnalyzed(Event):
    """The verdict of one canary step's bake: promote to the next step, or roll back."""

    step: int  # 1-based
    steps: int
    bake: float  # seconds sampled
    canary: CanaryGroup
    baseline: CanaryGroup | None  # None when no host is left on the old release
    rules: Sequence[CanaryRule]
    promote: bool
    reason: str
    # Where the numbers come from: the deployer's own requests ("probe") or the app's real
    # traffic as Prometheus counted it ("prometheus"; samples are then requests).
    source: str = "probe"


@dataclass(frozen=True)
class WatchChecked(Event):
    """One look of the post-deploy watch at the whole fleet's real traffic (Prometheus),
    judged against the fleet's own numbers before the first switch."""

    elapsed: float  # seconds since the watch started
    duration: float  # how long the watch lasts
    window: float  # seconds of traffic judged
    fleet: CanaryGroup
    baseline: CanaryGroup | None  # None: no numbers from before the switch
    rules: Sequence[CanaryRule]
    verdict: str  # ok | inconclusive | failed | error (Prometheus failing, see reason)
    reason: str
    final: bool = False  # the watch's last look: its verdict stands for the whole watch


@dataclass(frozen=True)
class Notice(Event):
    level: str  # info | warning | error
    text: str


@dataclass(frozen=True)
class CheckItem:
    """One line of the pre-deployment checklist (built by `deployer.preflight`)."""

    name: str  # short id, as `--override` takes it: hosts, lock, disk, ...
    title: str  # what is checked, in words
    status: str  # pass | fail | warn | skip
    critical: bool  # a critical failure stops a deploy and cannot be overridden
    detail: str = ""  # what was found; one line per host where it matters
    remedy: str = ""  # what to do, for fail and warn


@dataclass(frozen=True)
class Checklist(Event):
    """The pre-deployment checklist: after the lock is taken (deploy), or on its own
    (`invoke preflight`). `blocking` and `overridden` name items."""

    items: Sequence[CheckItem]
    blocking: Sequence[str] = ()  # items that stop the deploy
    overridden: Sequence[str] = ()  # failed or warned items let through by --override
    strict: bool = False  # warnings of non-critical items block too


@dataclass(frozen=True)
class RunFinished(Event):
    run_id: str
    action: str
    ok: bool
    duration: float
    releases: Mapping[str, str | None]  # host -> release it is on now
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers in order; safe to emit from worker threads."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        with self._lock:
            for subscriber in self._subscribers:
                subscriber(event)
