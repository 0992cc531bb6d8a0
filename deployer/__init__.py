"""deployer: an agentless SSH deployer. Immutable releases, rolling health-checked batches,
an atomic `current` switch, migrations once, and rollback from the recorded history.

The public API is what `__all__` lists; everything else is internal and may change.
The distribution is `shipfleet`; its version is `__version__`, read by the build from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from deployer.lazy import exports

if TYPE_CHECKING:
    from deployer.api import Loaded, Options, Project, deploy, load, rollback, status, unlock
    from deployer.events import EventBus
else:
    # Imported on first use: `import deployer` (and every `deployer.x` import, which runs this
    # file first) stays cheap, and `shipfleet --help` does not load the whole API.
    __getattr__, __dir__ = exports(
        globals(),
        {
            "EventBus": "deployer.events",
            "Loaded": "deployer.api",
            "Options": "deployer.api",
            "Project": "deployer.api",
            "deploy": "deployer.api",
            "load": "deployer.api",
            "rollback": "deployer.api",
            "status": "deployer.api",
            "unlock": "deployer.api",
        },
    )

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
