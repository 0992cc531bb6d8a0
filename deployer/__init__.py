"""deployer: an agentless SSH deployer. Immutable releases, rolling health-checked batches,
an atomic `current` switch, migrations once, and rollback from the recorded history.

The public API is what `__all__` lists; everything else is internal and may change.
The distribution is `shipfleet`; its version is `__version__`, read by the build from here.
"""

from deployer.api import Loaded, Options, Project, deploy, load, rollback, status, unlock
from deployer.errors import (
    ConfigError,
    DeployerError,
    DeployFailed,
    HostKeyError,
    LockHeldError,
    PreflightError,
    ReleaseError,
    RemoteCommandError,
    TransportError,
)
from deployer.events import EventBus

__version__ = "0.2.0"

__all__ = [
    "ConfigError",
    "DeployFailed",
    "DeployerError",
    "EventBus",
    "HostKeyError",
    "Loaded",
    "LockHeldError",
    "Options",
    "PreflightError",
    "Project",
    "ReleaseError",
    "RemoteCommandError",
    "TransportError",
    "deploy",
    "load",
    "rollback",
    "status",
    "unlock",
]
