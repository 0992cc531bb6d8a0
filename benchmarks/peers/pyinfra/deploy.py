"""The benchmark's deploy as a pyinfra (v3) deploy file, Capistrano layout like ours: build
the archive once, stage it on every host (upload + unpack into releases/<id>, link shared
dirs, render the host's config), then switch `current`, restart and health-check.

pyinfra has no `serial` batches: every operation runs on all hosts at once. The rollout is
approximated by ONE operation doing switch + restart + health check with `_parallel` set to
25% of the hosts, so each group of hosts switches, restarts and passes its health check
before the next group starts, as in Ansible's serial batches.

    pyinfra -y inventories/nN.py deploy.py \
        --data release_id=ID --data archive=/path/ID.tar.gz --data source_dir=/path/to/tree
"""

import os
import subprocess

from pyinfra import host, inventory
from pyinfra.operations import files, server

DEPLOY_TO = "/srv/benchapp"
SHARED = f"{DEPLOY_TO}/shared"
SHARED_DIRS = ("log", "run")
APP_PORT = 8000

release_id = host.data.release_id
archive = host.data.archive
release_path = f"{DEPLOY_TO}/releases/{release_id}"
remote_archive = f"{DEPLOY_TO}/{release_id}.tar.gz"

# pyinfra runs this file once per host to plan; the archive is built on the first pass only,
# at gzip level 1 as ours packs (deployer/release/archive.py COMPRESSLEVEL).
if not os.path.exists(archive):
    subprocess.run(
        ["tar", "--use-compress-program=gzip -1", "-cf", archive, "-C", host.data.source_dir, "."],
        check=True,
    )

files.directory(name="Create the release directory", path=release_path)

files.put(name="Upload the release archive", src=archive, dest=remote_archive)

server.shell(
    name="Unpack the release",
    commands=[f"tar -xzf {remote_archive} -C {release_path}", f"rm -f {remote_archive}"],
)

for shared_dir in SHARED_DIRS:
    files.directory(name=f"Create shared/{shared_dir}", path=f"{SHARED}/{shared_dir}")
    files.link(
        name=f"Link shared/{shared_dir} into the release",
        path=f"{release_path}/{shared_dir}",
        target=f"{SHARED}/{shared_dir}",
    )

files.template(
    name="Render the host's config",
    src="templates/app.ini.j2",
    dest=f"{release_path}/config/app.ini",
    app_listen=host.data.ssh_hostname,
    app_port=APP_PORT,
    shared_path=SHARED,
)

batch = max(1, len(inventory) * 25 // 100)
server.shell(
    name="Switch, restart and health-check (batches of 25%)",
    commands=[
        f"ln -sfn {release_path} {DEPLOY_TO}/.current.tmp",
        f"mv -T {DEPLOY_TO}/.current.tmp {DEPLOY_TO}/current",
        f"{release_path}/bin/restart",
        f"curl -fsS --retry 30 --retry-connrefused --retry-delay 1"
        f" http://{host.data.ssh_hostname}:{APP_PORT}/health"
        f' | grep -F \'"version": "{release_id}"\'',
    ],
    _parallel=batch,
)
