"""Shared pytest setup for every test tier.

Tests marked `integration` need the Docker sandbox fleet. Set DEPLOYER_SKIP_INTEGRATION=1 to
skip them on purpose; without it, a missing Docker makes them error, never silently skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory (examples/, playbooks/, templates/ live there)."""
    return REPO_ROOT


# trylast: the integration conftest marks its items first, then this sees the marks.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DEPLOYER_SKIP_INTEGRATION") != "1":
        return
    skip = pytest.mark.skip(reason="DEPLOYER_SKIP_INTEGRATION=1")
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(skip)
