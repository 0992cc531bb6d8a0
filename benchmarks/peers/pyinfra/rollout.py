"""Included by deploy.py and deploy_sync.py: switch `current` to the new release, restart the
app from it and check its health, 25% of the hosts at a time (one operation with `_parallel`:
pyinfra has no serial batches, see deploy.py)."""

import shlex

from jinja2 import Template
from pyinfra import host, inventory
from pyinfra.operations import server

deploy_to = shlex.quote(host.data.deploy_to)
release_id = host.data.release_id
release_path = shlex.quote(f"{host.data.deploy_to}/releases/{release_id}")

# Our playbook's vars and health URL are Ansible-style templates: render them for this host.
app_vars = {
    key: Template(value).render(ansible_host=host.data.ssh_hostname)
    if isinstance(value, str)
    else value
    for key, value in host.data.app_vars.items()
}
health_url = Template(host.data.health_url).render(**app_vars)
# curl waits for the app (a refused connection or a 5xx is retried every second), then the
# status and, if our playbook expects it, the JSON body's version must match.
check = [
    "body=$(mktemp)",
    "code=$(curl -sS --retry 30 --retry-connrefused --retry-delay 1"
    f" -o \"$body\" -w '%{{http_code}}' {shlex.quote(health_url)})",
    f'test "$code" = {int(host.data.health_status)}',
]
if host.data.health_expect_version:
    version_check = (
        "import json, sys; sys.exit(json.load(open(sys.argv[1]))['version'] != sys.argv[2])"
    )
    check.append(f'python3 -c {shlex.quote(version_check)} "$body" {shlex.quote(release_id)}')
check.append('rm -f "$body"')

batch = max(1, len(inventory) * 25 // 100)
server.shell(
    name="Switch, restart and health-check (batches of 25%)",
    # One command (server.shell runs each list item as a command of its own).
    commands=[
        " && ".join(
            [
                f"ln -sfn {release_path} {deploy_to}/.current.tmp",
                f"mv -T {deploy_to}/.current.tmp {deploy_to}/current",
                f"cd {release_path}",
                host.data.restart_command,
                *check,
            ]
        )
    ],
    _env={"RELEASE_ID": release_id, "RELEASE_PATH": f"{host.data.deploy_to}/releases/{release_id}"},
    _parallel=batch,
)
