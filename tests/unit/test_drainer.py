"""The drainer's promise when interrupted: a Ctrl-C that lands while the drain step itself runs
(some load balancers may already have the batch down) still puts the batch back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from deployer.config.model import Drain
from deployer.events import EventBus
from deployer.remote.transport import Result
from deployer.strategies.drain import DrainLb, DrainPlan
from deployer.strategies.drainer import Drainer


class InterruptedOnce:
    """A runner whose first `each` reaches every load balancer, then sees Ctrl-C."""

    def __init__(self) -> None:
        self.calls = 0

    def each(self, items: Sequence[Any], fn: Callable[[Any], Result]) -> dict[str, Result]:
        self.calls += 1
        results = {item.name: fn(item) for item in items}
        if self.calls == 1:
            raise KeyboardInterrupt
        return results


def _lb(name: str) -> DrainLb:
    hp: Any = SimpleNamespace(name=name)
    return DrainLb(hp=hp, dest="/etc/lb.conf", validate=None, reload="true", render_config=bytes)


@pytest.mark.parametrize("during", ["drain", "block"])
def test_ctrl_c_puts_the_batch_back_on_every_load_balancer(during: str) -> None:
    lbs = (_lb("lb1"), _lb("lb2"))
    plan = DrainPlan(Drain(min_in_service=0), lbs, ("web1", "web2"), ())
    runner: Any = InterruptedOnce() if during == "drain" else SimpleNamespace()
    if during == "block":
        runner.each = lambda items, fn: {i.name: fn(i) for i in items}
    drainer = Drainer(plan, runner, EventBus(), "run1")
    applied: list[tuple[str, frozenset[str]]] = []

    def record(lb: DrainLb, down: frozenset[str], what: str, draining: bool) -> Result:
        applied.append((lb.name, down))
        return Result(0, "")

    drainer._set = record  # type: ignore[method-assign]
    drainer._confirm = lambda lbs: None  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), drainer.out_of_service(["web1"]):
        raise KeyboardInterrupt
    down = frozenset({"web1"})
    assert applied == [("lb1", down), ("lb2", down), ("lb1", frozenset()), ("lb2", frozenset())]
    assert drainer.out == frozenset()
