"""Every remote step as a `Script`, built from quoted parts. Pure: no I/O, no connections.

Remote layout (Capistrano-compatible, plus `.deploy/` for our own state):

    <deploy_to>/releases/<id>/    immutable, read-only releases
    <deploy_to>/shared/           data that outlives releases, linked into each one
    <deploy_to>/current           symlink to the live release, replaced only by rename(2)
    <deploy_to>/.deploy/lock/     the deploy lock (mkdir is atomic); `info` says who holds it
    <deploy_to>/.deploy/history.jsonl   one JSON line per deploy/rollback, in order
    <deploy_to>/.deploy/staging/  uploads in progress; never a final release path
    <deploy_to>/.deploy/verified/<id>   a release's files as verified (`stage.verify_tree`)

A deploy spends one exec session per phase on each host: prepare (lock + facts), stage,
switch (+ restart), finish (history + prune + unlock); plus one migrate on one host.

One module per phase: `common` (Layout, exit codes, MARK, rendered files, shared fragments),
`prepare` (+ unremovable), `stage`, `switch` (switch, migrate, hooks, command checks),
`finish` (finish, unlock) and `flags` (push_flags). Everything is re-exported here, so
callers keep writing `from deployer.remote import scripts; scripts.stage(...)`.
"""

from deployer.remote.scripts.common import (
    EXIT_CHECKSUM,
    EXIT_LOCK_HELD,
    EXIT_MISSING_RELEASE,
    EXIT_UNSAFE_LAYOUT,
    EXIT_VERIFY,
    FINISHING,
    FREE_KB,
    MARK,
    STALE_FINISH,
    HostFiles,
    Layout,
    RenderedFile,
    section,
)
from deployer.remote.scripts.finish import finish, unlock
from deployer.remote.scripts.flags import push_flags
from deployer.remote.scripts.prepare import prepare, unremovable
from deployer.remote.scripts.stage import stage, verify_release
from deployer.remote.scripts.switch import check_command, hook, migrate, switch

__all__ = [
    "EXIT_CHECKSUM",
    "EXIT_LOCK_HELD",
    "EXIT_MISSING_RELEASE",
    "EXIT_UNSAFE_LAYOUT",
    "EXIT_VERIFY",
    "FINISHING",
    "FREE_KB",
    "MARK",
    "STALE_FINISH",
    "HostFiles",
    "Layout",
    "RenderedFile",
    "check_command",
    "finish",
    "hook",
    "migrate",
    "prepare",
    "push_flags",
    "section",
    "stage",
    "switch",
    "unlock",
    "unremovable",
    "verify_release",
]
