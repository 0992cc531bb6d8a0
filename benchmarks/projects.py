"""Write the three projects that do the same job on the same fleet: ours (inventories/,
playbooks/, templates/, the release tree as its source), Ansible's and pyinfra's (their
playbooks from benchmarks/peers/, inventories generated here for each fleet size).

All three connect as `deploy` with the fleet's key on port 2222 and check host keys strictly
against the fleet's known_hosts file.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
TEMPLATES = HERE / "templates"

DEPLOY_TO = "/srv/benchapp"

_OUR_PLAYBOOK = """\
# The benchmark's deploy with our deployer: the same job as peers/ansible/deploy.yml.
application: benchapp
deploy_to: {deploy_to}
keep_releases: 5

source:
  path: app
  # The same tree every peer ships: the Django app's vendored bytecode included.
  keep_bytecode: true

shared:
  dirs: [log, run]

templates:
  - src: app.ini.j2
    dest: config/app.ini
    mode: "0644"

restart: ./bin/restart

health:
  http:
    url: "http://{{{{ app_listen }}}}:{{{{ app_port }}}}/health"
    via: ssh
    expect_status: 200
    expect_version: true
  timeout: 2
  successes: 1
  interval: 0.2
  # A limit, not a pace: the Django app's workers took over 30 s to boot at a load average of
  # 60 (the peers wait longer still: Ansible 30 tries of up to 30 s, pyinfra's curl unbounded).
  deadline: 120

strategy:
  kind: rolling
  serial: [{serial}]
  max_fail_percentage: 0

connection:
  parallel: 40              # every host at once, like Ansible's forks = 40 and pyinfra
  connect_timeout: 10
  command_timeout: 600

vars:
  app_listen: "{{{{ ansible_host }}}}"
  app_port: 8000
"""


@dataclass(frozen=True)
class Host:
    name: str
    address: str


@dataclass(frozen=True)
class Projects:
    ours: Path
    ansible: Path
    pyinfra: Path
    tree: Path  # the release source, inside our project (source.path: app)
    key: Path
    known_hosts: Path


def env_name(size: int) -> str:
    return f"n{size}"


def write_projects(
    work: Path, hosts: Sequence[Host], sizes: Sequence[int], key: Path, known_hosts: Path
) -> Projects:
    ours, ansible, pyinfra = work / "ours", work / "ansible", work / "pyinfra"
    for directory in (
        ours / "inventories",
        ours / "playbooks",
        ansible / "inventories",
        pyinfra / "inventories",
    ):
        directory.mkdir(parents=True, exist_ok=True)

    # Ours: deploy.yml (serial 25%) and rollback.yml (one batch: serial 100%).
    (ours / "tasks.py").write_text("from deployer.tasks import ns  # noqa: F401\n")
    for name, serial in (("deploy", '"25%"'), ("rollback", '"100%"')):
        (ours / "playbooks" / f"{name}.yml").write_text(
            _OUR_PLAYBOOK.format(deploy_to=DEPLOY_TO, serial=serial)
        )
    for project in (ours, ansible, pyinfra):
        shutil.copytree(TEMPLATES, project / "templates", dirs_exist_ok=True)

    # The peers' playbooks, as written in benchmarks/peers/.
    for src in (PEERS / "ansible").rglob("*"):
        if src.is_file():
            dest = ansible / src.relative_to(PEERS / "ansible")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    for src in (PEERS / "pyinfra").glob("*.py"):
        shutil.copy2(src, pyinfra / src.name)

    for size in sizes:
        subset = hosts[:size]
        name = env_name(size)
        (ours / "inventories" / f"{name}.yml").write_text(_our_inventory(subset, key, known_hosts))
        (ansible / "inventories" / f"{name}.yml").write_text(
            _ansible_inventory(subset, key, known_hosts)
        )
        (pyinfra / "inventories" / f"{name}.py").write_text(
            _pyinfra_inventory(subset, key, known_hosts)
        )
    return Projects(ours, ansible, pyinfra, ours / "app", key, known_hosts)


def _our_inventory(hosts: Sequence[Host], key: Path, known_hosts: Path) -> str:
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "deploy",
                "ansible_port": 2222,
                "ansible_ssh_private_key_file": str(key),
                "ssh_known_hosts_file": str(known_hosts),
            },
            "children": {"web": {"hosts": {h.name: {"ansible_host": h.address} for h in hosts}}},
        }
    }
    return yaml.safe_dump(inventory, sort_keys=False)


def _ansible_inventory(hosts: Sequence[Host], key: Path, known_hosts: Path) -> str:
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "deploy",
                "ansible_port": 2222,
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
                ),
            },
            "children": {"web": {"hosts": {h.name: {"ansible_host": h.address} for h in hosts}}},
        }
    }
    return yaml.safe_dump(inventory, sort_keys=False)


def _pyinfra_inventory(hosts: Sequence[Host], key: Path, known_hosts: Path) -> str:
    lines = [
        '"""The benchmark fleet for pyinfra: group `web`, strict host keys."""',
        "",
        "web = (",
        "    [",
        *(f"        ({h.name!r}, {{'ssh_hostname': {h.address!r}}})," for h in hosts),
        "    ],",
        "    {",
        "        'ssh_user': 'deploy',",
        "        'ssh_port': 2222,",
        f"        'ssh_key': {str(key)!r},",
        f"        'ssh_known_hosts_file': {str(known_hosts)!r},",
        "        'ssh_strict_host_key_checking': 'yes',",
        "    },",
        ")",
        "",
    ]
    return "\n".join(lines)
