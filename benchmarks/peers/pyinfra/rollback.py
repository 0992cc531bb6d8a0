"""Rollback as a pyinfra deploy file: find the release before the live one on each host,
switch `current` back to it, restart and health-check; all hosts at once (one batch). The
app's settings are group data (group_data/web.py), as for deploy.py.

    pyinfra -y inventories/nN.py rollback.py
"""

import shlex

from jinja2 import Template
from pyinfra import host
from pyinfra.operations import server

deploy_to = shlex.quote(host.data.deploy_to)
app_vars = {
    key: Template(value).render(ansible_host=host.data.ssh_hostname)
    if isinstance(value, str)
    else value
    for key, value in host.data.app_vars.items()
}
health_url = Template(host.data.health_url).render(**app_vars)
version_check = "import json, sys; sys.exit(json.load(open(sys.argv[1]))['version'] != sys.argv[2])"

commands = [
    "set -euo pipefail",
    f'live=$(basename "$(readlink {deploy_to}/current)")',
    f'previous=$(ls -1 {deploy_to}/releases | sort | grep -B1 -xF "$live" | head -n1)',
    '[ -n "$previous" ]',
    '[ "$previous" != "$live" ]',
    f'export RELEASE_ID="$previous" RELEASE_PATH={deploy_to}/releases/"$previous"',
    f'ln -sfn "$RELEASE_PATH" {deploy_to}/.current.tmp',
    f"mv -T {deploy_to}/.current.tmp {deploy_to}/current",
    'cd "$RELEASE_PATH"',
    host.data.restart_command,
    "body=$(mktemp)",
    "code=$(curl -sS --retry 30 --retry-connrefused --retry-delay 1"
    f" -o \"$body\" -w '%{{http_code}}' {shlex.quote(health_url)})",
    f'test "$code" = {int(host.data.health_status)}',
]
if host.data.health_expect_version:
    commands.append(f'python3 -c {shlex.quote(version_check)} "$body" "$previous"')
commands.append('rm -f "$body"')

server.shell(
    name="Switch back to the previous release, restart and health-check",
    commands=["; ".join(commands)],
    _shell_executable="bash",
)
