"""Batches and failure budgets: pure planning."""

import pytest

from deployer.plan import compute_batches, over_budget

HOSTS = [f"h{i}" for i in range(1, 11)]


@pytest.mark.parametrize(
    ("serial", "sizes"),
    [
        (["100%"], [10]),
        ([3], [3, 3, 3, 1]),
        (["25%"], [2, 2, 2, 2, 2]),
        ([1, "25%", "100%"], [1, 2, 7]),
        ([1, 2], [1, 2, 2, 2, 2, 1]),
        (["1%"], [1] * 10),  # never zero-sized
    ],
)
def test_serial_like_ansible(serial, sizes):
    batches = compute_batches(HOSTS, serial)
    assert [len(b) for b in batches] == sizes
    assert [h for b in batches for h in b] == HOSTS  # order kept, nobody twice


def test_no_hosts_no_batches():
    assert compute_batches([], [1]) == []


@pytest.mark.parametrize(
    ("size", "failed", "pct", "stop"),
    [
        (4, 0, 0, False),
        (4, 1, 0, True),
        (4, 1, 25, False),  # exactly at the limit continues
        (4, 2, 25, True),  # one more stops
        (3, 1, 33, True),  # 33.3% > 33
        (3, 1, 34, False),
        (1, 1, 100, False),
    ],
)
def test_failure_budget(size, failed, pct, stop):
    assert over_budget(size, failed, pct) is stop
