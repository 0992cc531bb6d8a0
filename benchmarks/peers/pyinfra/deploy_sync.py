"""The benchmark's deploy with pyinfra's own way of sending only what changed (issue 18's
fairness row "pyinfra-sync"): `files.rsync` keeps a cached copy of the release tree on each
host up to date, then the host hard-links it into releases/<id> (Capistrano's remote cache).
Hard links are safe: rsync writes a changed file to a temporary name and renames it over the
old one (never in place), so a release linked to the old file keeps it. The rest (shared
dirs, config files, migration, batched switch + restart + health check) is deploy.py's.

Why `files.rsync` and not `files.sync`: `files.sync` plans one `files.put` per file, and each
asks the host for facts about its file (a separate command per fact over pyinfra's one SSH
connection), then uploads changed files one by one over SFTP. With this release's ~2,900
files that took 635 s for a first deploy to 5 hosts, and a redeploy pays the same per-file
facts (issue 18's smoke run). pyinfra's issue #291 ("files.sync() is rather slow" with many
files) is what `files.rsync` was added for; its docs mark it alpha. It runs the controller's
`rsync` over the system ssh with the inventory's key, port and strict known_hosts. Flags:
its default `-ax --delete`, plus compression at the level every tool uses (zlib level 1,
the others' gzip -1).

    pyinfra -y inventories/nN.py deploy_sync.py \
        --data release_id=ID --data archive=/unused --data source_dir=/path/to/tree
"""

import shlex

from pyinfra import host, local
from pyinfra.operations import files, server

deploy_to = host.data.deploy_to
cache = f"{deploy_to}/cache"
release_path = f"{deploy_to}/releases/{host.data.release_id}"

files.directory(name="Create the releases directory", path=f"{deploy_to}/releases")

files.rsync(
    name="Sync the release tree into the cached copy (changed files only)",
    src=f"{host.data.source_dir}/",
    dest=f"{cache}/",
    flags=["-ax", "--delete", "--compress", "--compress-choice=zlib", "--compress-level=1"],
)

server.shell(
    name="Link the cached copy into the release",
    commands=[f"cp -al {shlex.quote(cache)} {shlex.quote(release_path)}"],
)

local.include("release_tasks.py")  # shared dirs, config files, migration
local.include("rollout.py")  # switch, restart, health check in batches of 25%
