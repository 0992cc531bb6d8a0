"""The Invoke task `inventory`: the inventory as read, in the shape of `ansible-inventory`.
Reads files only. Wired into the root collection in deployer/tasks.py."""

from __future__ import annotations

import json

from invoke.context import Context
from invoke.tasks import task

from deployer import api
from deployer.taskkit import HelpTask, handles_errors, help_for, project, require_env

__all__ = ["inventory"]


@task(
    klass=HelpTask,  # `-h` is help, as for ansible-inventory: --host gets `-o`
    help=help_for(
        "env",
        list="every group with its hosts and children, and each host's merged variables"
        " (the default)",
        host="only this host's merged variables",
    ),
)
@handles_errors
def inventory(
    c: Context, env: str | None = None, list: bool = False, host: str | None = None
) -> None:
    """Print the inventory as read, in the shape of `ansible-inventory --list` (or `--host`).

    Groups with their hosts and child groups, and `_meta.hostvars` with each host's variables
    merged as a deploy sees them (group_vars/ and host_vars/ included), secret-named values
    shown as ***. Reads files only: connects to nothing."""
    data = api.inventory_listing(project(), require_env(env), host=host)
    from deployer.config.ansible.listing import json_value  # not for `invoke --list`

    print(json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False, default=json_value))
