"""The sandbox fleet: real OpenSSH hosts in local Docker containers, one loopback address each.

Used by the quick start, the integration tests and the benchmarks. It must never send traffic
anywhere but 127.0.0.0/8, nor create a Docker network.

Names are loaded on first use, so `python -m deployer.sandbox.image` runs without importing
testcontainers and without runpy's warning about a module imported twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployer.sandbox.containers import DEFAULT_PORT, SandboxHost, check_address
    from deployer.sandbox.fleet import Fleet, down_fleet, find_fleet, start_fleet
    from deployer.sandbox.image import SandboxError, ensure_image, image_name

_EXPORTS = {
    "DEFAULT_PORT": "containers",
    "Fleet": "fleet",
    "SandboxHost": "containers",
    "check_address": "containers",
    "down_fleet": "fleet",
    "find_fleet": "fleet",
    "start_fleet": "fleet",
    "SandboxError": "image",
    "ensure_image": "image",
    "image_name": "image",
}

__all__ = [
    "DEFAULT_PORT",
    "Fleet",
    "SandboxError",
    "SandboxHost",
    "check_address",
    "down_fleet",
    "ensure_image",
    "find_fleet",
    "image_name",
    "start_fleet",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deployer.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"deployer.sandbox.{module}"), name)
