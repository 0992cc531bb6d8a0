"""The playbook's `resources:` section, read and validated: where `invoke status` finds the
app's processes, and the limits above which the checklist warns about a host."""

from __future__ import annotations

import posixpath

from deployer.config.model import ResourceLimits, Resources
from deployer.config.yamlfile import Node

__all__ = ["resources"]

_LIMITS = (
    "max_load_per_cpu",
    "min_memory_available_percent",
    "min_disk_free_percent",
    "min_inodes_free_percent",
)


def resources(node: Node) -> Resources:
    fields = node.mapping(
        ("pidfile", "systemd_unit", "warn"),
        hint="resources: {pidfile: shared/run/app.pid, warn: {min_disk_free_percent: 10}}",
    )
    pidfile = fields.get("pidfile")
    unit = fields.get("systemd_unit")
    if pidfile is not None and unit is not None:
        raise unit.error("give either pidfile or systemd_unit, not both")
    if pidfile is not None and ".." in posixpath.normpath(pidfile.text()).split("/"):
        raise pidfile.error("must not leave deploy_to with '..'")
    return Resources(
        pidfile=pidfile.text() if pidfile is not None else None,
        systemd_unit=unit.text() if unit is not None else None,
        warn=_limits(fields["warn"]) if "warn" in fields else ResourceLimits(),
    )


def _limits(node: Node) -> ResourceLimits:
    fields = node.mapping(_LIMITS)  # a limit set to null is not checked
    defaults = ResourceLimits()
    values: dict[str, float | None] = {}
    for key in _LIMITS:
        if key not in fields:
            values[key] = getattr(defaults, key)
        elif fields[key].is_null:
            values[key] = None
        elif key == "max_load_per_cpu":
            values[key] = fields[key].number(positive=True)
        else:
            values[key] = fields[key].number(minimum=0, maximum=100)
    return ResourceLimits(**values)
