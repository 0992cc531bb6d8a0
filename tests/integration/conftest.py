"""Integration-test fixtures: a real fleet of five OpenSSH hosts (web1..web5) per test worker.

Each pytest-xdist worker claims its own block of loopback addresses (gw0 -> 127.0.0.21-25,
gw1 -> 127.0.0.31-35, ...; no xdist -> 127.0.0.21-25). The claim is a file lock, so a second
test session on the same machine takes the next free block instead of clobbering this one,
and containers found in a block we hold are orphans of a dead session, safe to remove.
DEPLOYER_TEST_BLOCK_OFFSET=N shifts every worker's first choice by N blocks (13 -> gw0 tries
127.0.0.151-155 first): a second checkout's sessions then start away from the first's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.sandbox import Fleet, start_fleet

HERE = Path(__file__).resolve().parent
FLEET_SIZE = 5
FIRST_BLOCK_START = 21
BLOCK_SIZE = 10  # addresses per block; hosts use the first five, the last is kept unused
MAX_BLOCKS = (254 - FIRST_BLOCK_START + 1) // BLOCK_SIZE
LOCK_DIR = Path(tempfile.gettempdir()) / "deployer-sandbox-slots"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Hooks in a conftest see every collected item, not only those under its directory.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def _preferred_block() -> int:
    offset = os.environ.get("DEPLOYER_TEST_BLOCK_OFFSET", "0")
    if not offset.isdigit():
        raise RuntimeError(f"DEPLOYER_TEST_BLOCK_OFFSET must be a block count, got {offset!r}")
    return (_worker_index() + int(offset)) % MAX_BLOCKS


def _block_addresses(block: int) -> list[str]:
    start = FIRST_BLOCK_START + block * BLOCK_SIZE
    return [f"127.0.0.{start + offset}" for offset in range(BLOCK_SIZE)]


@contextlib.contextmanager
def _claimed_block(preferred: int) -> Iterator[int]:
    """Hold an exclusive claim on an address block for the whole session."""
    LOCK_DIR.mkdir(exist_ok=True)
    for step in range(MAX_BLOCKS):
        block = (preferred + step) % MAX_BLOCKS
        handle = (LOCK_DIR / f"block-{block}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield block
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError(f"all {MAX_BLOCKS} sandbox address blocks are in use by other sessions")


def _docker_problem() -> str | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception as error:  # any failure means the same thing here: no usable Docker
        return f"{type(error).__name__}: {error}"
    return None


def _remove_orphans(addresses: list[str]) -> None:
    import docker

    from deployer.sandbox.containers import LABEL_ADDRESS, LABEL_FLEET

    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": LABEL_FLEET}):
        if container.labels.get(LABEL_ADDRESS) in addresses:
            container.remove(force=True)


@pytest.fixture(scope="session")
def address_block() -> Iterator[list[str]]:
    """The ten loopback addresses this worker owns for the session."""
    problem = _docker_problem()
    if problem:
        pytest.fail(
            f"integration tests need Docker ({problem}); run scripts/setup, "
            "or set DEPLOYER_SKIP_INTEGRATION=1 to skip them",
            pytrace=False,
        )
    with _claimed_block(_preferred_block()) as block:
        addresses = _block_addresses(block)
        _remove_orphans(addresses)
        yield addresses


@pytest.fixture(scope="session")
def unused_address(address_block: list[str]) -> str:
    """A loopback address of this worker's block where nothing listens (a dead host)."""
    return address_block[-1]


@pytest.fixture(scope="session")
def fleet(address_block: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Five real OpenSSH hosts web1..web5, shared by the worker's whole session."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    block = (int(address_block[0].rsplit(".", 1)[1]) - FIRST_BLOCK_START) // BLOCK_SIZE
    hosts = [(f"web{i + 1}", address_block[i]) for i in range(FLEET_SIZE)]
    started = start_fleet(f"pytest-{worker}-b{block}", hosts, tmp_path_factory.mktemp("fleet"))
    try:
        yield started
    finally:
        started.down()


@pytest.fixture
def clean_fleet(fleet: Fleet) -> Fleet:
    """The session fleet, reset first: /srv emptied, deploy's processes gone, all hosts up."""
    fleet.reset()
    return fleet
