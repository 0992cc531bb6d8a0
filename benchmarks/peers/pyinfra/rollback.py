"""Rollback as a pyinfra deploy file: find the release before the live one on each host,
switch `current` back to it, restart and health-check; all hosts at once (one batch).

    pyinfra -y inventories/nN.py rollback.py
"""

from pyinfra import host
from pyinfra.operations import server

DEPLOY_TO = "/srv/benchapp"
APP_PORT = 8000

server.shell(
    name="Switch back to the previous release, restart and health-check",
    commands=[
        "set -euo pipefail; "
        f'live=$(basename "$(readlink {DEPLOY_TO}/current)"); '
        f'previous=$(ls -1 {DEPLOY_TO}/releases | sort | grep -B1 -xF "$live" | head -n1); '
        '[ -n "$previous" ] && [ "$previous" != "$live" ]; '
        f'ln -sfn "{DEPLOY_TO}/releases/$previous" {DEPLOY_TO}/.current.tmp; '
        f"mv -T {DEPLOY_TO}/.current.tmp {DEPLOY_TO}/current; "
        f'"{DEPLOY_TO}/releases/$previous/bin/restart"; '
        f"curl -fsS --retry 30 --retry-connrefused --retry-delay 1"
        f" http://{host.data.ssh_hostname}:{APP_PORT}/health"
        ' | grep -F "\\"version\\": \\"$previous\\""',
    ],
    _shell_executable="bash",
)
