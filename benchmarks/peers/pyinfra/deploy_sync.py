"""The benchmark's deploy with pyinfra's own way of sending only what changed (issue 18's
fairness row "pyinfra-sync"): `files.sync` keeps a cached copy of the release tree on each
host up to date (it uploads the files whose sha1 differs, and removes the ones gone), then
the host copies the cache into releases/<id>. The rest (shared dirs, config, batched
switch + restart + health check) is deploy.py's, unchanged.

Measured once (a smoke run at 5 hosts on a loaded machine, issue 18): the first deploy took
635 s, sent 256 MB (its archive route: 124 MB) and 135 CPU-s of pyinfra, because
`files.sync` asks each host for two facts per file (2,900 files). A redeploy pays the same
per-file facts; it did not finish within that run's 15 minutes.

The copy is `cp -a`, not hard links: `files.sync` rewrites a changed file in place, which
would change every release linked to it. A first deploy sends the whole tree file by file.

    pyinfra -y inventories/nN.py deploy_sync.py \
        --data release_id=ID --data archive=/unused --data source_dir=/path/to/tree
"""

from pyinfra import host, inventory
from pyinfra.operations import files, server

DEPLOY_TO = "/srv/benchapp"
SHARED = f"{DEPLOY_TO}/shared"
CACHE = f"{DEPLOY_TO}/cache"
SHARED_DIRS = ("log", "run")
APP_PORT = 8000

release_id = host.data.release_id
release_path = f"{DEPLOY_TO}/releases/{release_id}"

files.directory(name="Create the releases directory", path=f"{DEPLOY_TO}/releases")

files.sync(
    name="Sync the release tree into the cached copy (changed files only)",
    src=host.data.source_dir,
    dest=CACHE,
    delete=True,
)

server.shell(
    name="Copy the cached copy into the release",
    commands=[f"rm -rf {release_path}", f"cp -a {CACHE} {release_path}"],
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
