"""Every remote step as a `Script`, built from quoted parts. Pure: no I/O, no connections.

Remote layout (Capistrano-compatible, plus `.deploy/` for our own state):

    <deploy_to>/releases/<id>/    immutable, read-only releases
    <deploy_to>/shared/           data that outlives releases, linked into each one
    <deploy_to>/current           symlink to the live release, replaced only by rename(2)
    <deploy_to>/.deploy/lock/     the deploy lock (mkdir is atomic); `info` says who holds it
    <deploy_to>/.deploy/history.jsonl   one JSON line per deploy/rollback, in order
    <deploy_to>/.deploy/staging/  uploads in progress; never a final release path

A deploy spends one exec session per phase on each host: prepare (lock + facts), stage,
switch (+ restart), finish (history + prune + unlock); plus one migrate on one host.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deployer.remote.resources import resource_lines
from deployer.remote.shell import Raw, Script, Stdin, cmd, lines, q

# Exit codes our scripts use for conditions the orchestrator tells apart.
EXIT_LOCK_HELD = 75
EXIT_CHECKSUM = 65
EXIT_MISSING_RELEASE = 66

MARK = "@@"
FREE_KB = "awk 'NR==2 {print $4}'"  # the "Available" column of `df -Pk`
# A run's own temporary `current` link is `.current.<run id>` (12 hex digits, see
# runner.new_run_id). Debris of a killed run is removed only when it is exactly that: a
# symlink with such a name pointing into our releases/. Anything else is someone else's.
_OWN_LINK = "[0-9a-f]" * 12
FINISHING = "finishing"  # a file in the lock directory: the run's outcome is recorded
STALE_FINISH = 300  # seconds after which a recorded run's unfinished cleanup no longer holds


@dataclass(frozen=True)
class Layout:
    """Paths of one application's directory tree on a host."""

    root: str

    @property
    def releases(self) -> str:
        return posixpath.join(self.root, "releases")

    @property
    def shared(self) -> str:
        return posixpath.join(self.root, "shared")

    @property
    def current(self) -> str:
        return posixpath.join(self.root, "current")

    @property
    def state(self) -> str:
        return posixpath.join(self.root, ".deploy")

    @property
    def lock(self) -> str:
        return posixpath.join(self.state, "lock")

    @property
    def history(self) -> str:
        return posixpath.join(self.state, "history.jsonl")

    @property
    def staging(self) -> str:
        return posixpath.join(self.state, "staging")

    def release(self, release_id: str) -> str:
        return posixpath.join(self.releases, release_id)


@dataclass(frozen=True)
class RenderedFile:
    """One rendered template. Its content may hold secrets: it travels only on stdin."""

    dest: str  # relative to the release, or to shared/ when `shared`
    mode: int
    content: bytes = field(repr=False)
    shared: bool = False


@dataclass(frozen=True)
class HostFiles:
    """A host's rendered templates as the stage session receives them: the release's in one
    tar, each shared one as its own stdin segment."""

    files: tuple[RenderedFile, ...] = ()
    tar: bytes = field(default=b"", repr=False)  # the files that are not `shared`

    @classmethod
    def pack(cls, files: Sequence[RenderedFile]) -> HostFiles:
        in_release = [f for f in files if not f.shared]
        if not in_release:
            return cls(tuple(files))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for item in in_release:
                info = tarfile.TarInfo(item.dest)
                info.size = len(item.content)
                info.mode = item.mode
                info.mtime = 0
                tar.addfile(info, io.BytesIO(item.content))
        return cls(tuple(files), buf.getvalue())

    @property
    def shared(self) -> tuple[RenderedFile, ...]:
        return tuple(f for f in self.files if f.shared)

    def __bool__(self) -> bool:
        return bool(self.tar or self.shared)


def _or_explain(command: str, what: str, where: str) -> str:
    """Run `command`; on failure say what failed and how much space is left under `where`
    (a full disk shows up here as a terse 'error writing standard output')."""
    free = f'"$(df -Pk {q(where)} 2>/dev/null | {FREE_KB})"'
    report = cmd("printf", "%s failed (%s KiB free on the filesystem of %s)\\n", what)
    return f"{command} || {{ {report} {free} {q(where)} >&2; exit 1; }}"


def _step(name: str) -> str:
    return cmd("echo", f"{MARK}step {name}")


def _exports(env: Mapping[str, str]) -> list[str]:
    return [cmd("export", Raw(f"{key}={q(value)}")) for key, value in sorted(env.items())]


def _unlock_if_ours(layout: Layout, run_id: str) -> str:
    info = posixpath.join(layout.lock, "info")
    return (
        f"if [ -f {q(info)} ] && grep -qF {q(run_id)} {q(info)}; then rm -rf {q(layout.lock)}; fi"
    )


def _append_history(layout: Layout, records: Sequence[str]) -> list[str]:
    return [cmd("printf", "%s\\n", record, Raw(">>"), layout.history) for record in records]


def _remove_release(path: str) -> str:
    # Releases are read-only; make them writable again only to delete them.
    return f"if [ -d {q(path)} ]; then chmod -R u+w {q(path)}; rm -rf {q(path)}; fi"


def prepare(
    layout: Layout,
    *,
    lock_info: str | None,
    baseline: bool = False,
    takeover: str | None = None,
    history_lines: int = 500,
    pidfile: str | None = None,
    systemd_unit: str | None = None,
) -> Script:
    """Create the layout, take the lock (when `lock_info` is given) and report the host's facts.
    With `baseline`, also the current release's MANIFEST and file modes, so the next upload
    can send only what changed (see `deployer.delta`). The host's resource use is reported
    too; the app's processes only when `pidfile` or `systemd_unit` says where to find them.

    Output sections, parsed by `deployer.facts.parse_facts`.
    """
    manifest = posixpath.join(layout.current, "MANIFEST")
    baseline_lines: list[str] = [
        f"if [ -f {q(manifest)} ]; then",
        f'  echo {q(MARK + "manifest_digest")} "$(sha256sum < {q(manifest)} | cut -c1-64)"',
    ]
    if baseline:
        baseline_lines += [
            f"  echo {q(MARK + 'manifest')}",
            f"  cat {q(manifest)}",
            f"  echo {q(MARK + 'modes')}",
            f"  (cd {q(layout.current + '/')} && find . -type f -printf '%m %P\\n')",
        ]
    baseline_lines.append("fi")
    info = posixpath.join(layout.lock, "info")
    finishing = posixpath.join(layout.lock, FINISHING)
    lock_time = f"$(stat -c %Y {q(layout.lock)} 2>/dev/null || date +%s)"
    finish_age = f"$(( $(date +%s) - $(stat -c %Y {q(finishing)} 2>/dev/null || date +%s) ))"
    holder = [
        f"  echo {q(MARK + 'lock held')}",
        f'  echo {q(MARK + "lockinfo")} "$(cat {q(info)} 2>/dev/null | head -c 2000)"',
        f'  echo {q(MARK + "lockage")} "$(( $(date +%s) - {lock_time} ))"',
        f'  if [ -f {q(finishing)} ]; then echo {q(MARK + "lockfinishing")} "{finish_age}"; fi',
    ]
    # Without a lock to take (status, releases), just report any holder.
    lock_lines: list[str] = [f"if [ -d {q(layout.lock)} ]; then", *holder, "fi"]
    if lock_info is not None:
        takeover_lines = []
        if takeover:
            # Resuming a run that died holding the lock: that run's lock is ours to take.
            takeover_lines = [
                f"elif grep -qF {q(takeover)} {q(info)} 2>/dev/null; then",
                f"  printf '%s\\n' {q(lock_info)} > {q(info)}",
                f"  echo {q(MARK + 'lock acquired')}",
            ]
        lock_lines = [
            f"if mkdir {q(layout.lock)} 2>/dev/null; then",
            f"  printf '%s\\n' {q(lock_info)} > {q(info)}",
            f"  echo {q(MARK + 'lock acquired')}",
            *takeover_lines,
            # A run whose outcome is recorded and whose finish stopped part-way (killed, host
            # rebooted) left only cleanup undone: after STALE_FINISH seconds, the lock is ours.
            f"elif [ -f {q(finishing)} ] && [ {finish_age} -gt {STALE_FINISH} ]; then",
            f'  echo {q(MARK + "lockstale")} "$(cat {q(info)} 2>/dev/null | head -c 2000)"',
            f"  rm -f {q(finishing)}",
            f"  printf '%s\\n' {q(lock_info)} > {q(info)}",
            f"  echo {q(MARK + 'lock acquired')}",
            "else",
            *holder,
            f"  exit {EXIT_LOCK_HELD}",
            "fi",
        ]
    return Script(
        step="prepare",
        lines=lines(
            # Only a run that takes the lock creates the layout; status stays read-only.
            cmd("mkdir", "-p", layout.releases, layout.shared, layout.state)
            if lock_info is not None
            else (),
            lock_lines,
            f'echo {q(MARK + "current")} "$(readlink {q(layout.current)} || true)"',
            f"echo {q(MARK + 'releases')}",
            f"ls -1 {q(layout.releases)} 2>/dev/null || true",
            f"echo {q(MARK + 'history')}",
            f"if [ -f {q(layout.history)} ]; then tail -n {history_lines} {q(layout.history)}; fi",
            baseline_lines,
            _foreign_and_unremovable(layout),
            # Free space where releases will land; before a first deploy (a read-only
            # preflight) the root does not exist yet, so ask its nearest existing parent.
            f"df_dir={q(layout.root)}",
            'while [ ! -d "$df_dir" ]; do df_dir=$(dirname "$df_dir"); done',
            f'echo {q(MARK + "df")} "$(df -Pk "$df_dir" 2>/dev/null | {FREE_KB})"',
            resource_lines(MARK, layout.root, pidfile=pidfile, systemd_unit=systemd_unit),
            f"echo {q(MARK + 'end')}",
        ),
    )


def _foreign_and_unremovable(layout: Layout) -> list[str]:
    """Report, never touch: entries in deploy_to this tool did not create (`@@foreign`), and
    releases other than the live one holding a non-empty directory we do not own, which
    pruning could not delete (`@@unremovable RELEASE<TAB>OWNER<TAB>PATH`)."""
    root, releases = q(layout.root), q(layout.releases)
    return [
        f"if [ -d {root} ]; then for entry in {root}/* {root}/.[!.]*; do",
        '  [ -e "$entry" ] || [ -L "$entry" ] || continue',
        "  name=${entry##*/}",
        '  case "$name" in releases|shared|current|.deploy) continue ;; esac',
        f'  case "$name" in .current.{_OWN_LINK}) [ -L "$entry" ] && continue ;; esac',
        '  kind=file; [ -L "$entry" ] && kind=symlink; [ -d "$entry" ] && [ ! -L "$entry" ]'
        " && kind=directory",
        f'  printf \'%s %s\\t%s\\n\' {q(MARK + "foreign")} "$kind" "$name"',
        "done; fi",
        f'live="$(readlink {q(layout.current)} || true)"',
        f"if [ -d {releases} ]; then for release in {releases}/*; do",
        '  [ -d "$release" ] && [ "$release" != "$live" ] || continue',
        '  found=$(find "$release" -mindepth 1 -type d ! -user "$(id -u)" ! -empty'
        " -printf '%u\\t%P' -quit 2>/dev/null || true)",
        f"  if [ -n \"$found\" ]; then printf '%s %s\\t%s\\n' {q(MARK + 'unremovable')}"
        ' "${release##*/}" "$found"; fi',
        "done; fi",
    ]


def stage(
    layout: Layout,
    release_id: str,
    run_id: str,
    *,
    archive: object,
    archive_size: int,
    archive_sha256: str,
    host_files: HostFiles | bytes,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    base: str | None = None,
    link_list: bytes = b"",
) -> Script:
    """Receive the release on stdin, verify it, assemble it in staging, then rename it into
    `releases/<id>`. Nothing under `releases/` is ever partial: the rename is the last step.

    With `base`, the archive is a delta: the files named in `link_list` (gzip'd, NUL-separated)
    are hard-linked from `releases/<base>` instead of travelling."""
    tmp = posixpath.join(layout.staging, f"{release_id}.{run_id}")
    tree = posixpath.join(tmp, "tree")
    final = layout.release(release_id)
    # One pass over the archive as it arrives: `tee` feeds tar and sha256sum at once, so it
    # is never written to disk, read back, or read twice. tar unpacks into staging only;
    # the checksum is judged before anything else happens, and a tree whose archive did not
    # match is never renamed in (the trap removes it). `tee -p` keeps hashing when tar stops
    # early (a full disk), so the whole archive is read and the real cause is reported.
    # fd 3 carries the archive to tar, fd 4 the checksum out of the command substitution;
    # its status is tar's.
    receive = (
        "{ { "
        + cmd("head", "-c", archive_size, Raw("|"), "tee", "-p", "/dev/fd/3", Raw("|"))
        + " sha256sum >&4; } 3>&1 | "
        + cmd("tar", "-xzf", "-", "-C", tree, "--no-same-owner", Raw(">&2"))
        + "; } 4>&1"
    )
    body: list[str] = [
        # Whatever happens, leave no staging debris behind.
        f"trap {q(f'chmod -R u+w {q(tmp)} 2>/dev/null; rm -rf {q(tmp)}')} EXIT",
        _step("upload"),
        cmd("rm", "-rf", tmp),
        cmd("mkdir", "-p", tree),
        "unpacked=yes",
        f"sum=$({receive}) || unpacked=no",
        f'if [ "${{sum%% *}}" != {q(archive_sha256)} ];'
        f" then echo {q(f'checksum mismatch for the uploaded release archive ({release_id})')}"
        f" >&2; exit {EXIT_CHECKSUM}; fi",
        _or_explain('[ "$unpacked" = yes ]', f"unpacking into {tree}", tmp),
    ]
    if base is not None:
        body += [
            _step("link"),
            f"head -c {len(link_list)} | gzip -dc | (cd {q(layout.release(base))} &&"
            f" xargs -0 -r cp -l --parents -t {q(tree)} --)",
        ]
    # No per-file `sha256sum -c MANIFEST` here: every byte unpacked is covered by the archive
    # checksum just verified, and the MANIFEST was written from those same bytes when packing.
    # The files a delta hard-links are the base release's own inodes: that release was
    # verified when it was staged, is read-only, and is the one whose MANIFEST matched.
    if isinstance(host_files, bytes):  # a bare tar of release files, modes left owner-only
        host_files = HostFiles(tar=host_files)
    if host_files:
        body += [
            _step("templates"),
            *_templates(layout, tree, run_id, host_files, shared_dirs, shared_files),
        ]
    if shared_dirs or shared_files:
        body.append(_step("link_shared"))
    for rel in shared_dirs:
        target = posixpath.join(layout.shared, rel)
        link = posixpath.join(tree, rel)
        body += [
            cmd("mkdir", "-p", target, posixpath.dirname(link)),
            cmd("rm", "-rf", link),
            cmd("ln", "-s", target, link),
        ]
    for rel in shared_files:
        target = posixpath.join(layout.shared, rel)
        link = posixpath.join(tree, rel)
        body += [
            cmd("mkdir", "-p", posixpath.dirname(target), posixpath.dirname(link)),
            # A missing shared file starts empty and private: it is where secrets go.
            f"[ -e {q(target)} ] || (umask 077 && : > {q(target)})",
            cmd("rm", "-rf", link),
            cmd("ln", "-s", target, link),
        ]
    body += [
        _step("finalize"),
        # Read-only below the top; the top stays writable until after the rename, which
        # must update the directory's `..` entry.
        cmd("chmod", "-R", "a-w", tree),
        cmd("chmod", "u+w", tree),
        # The same release id staged before (a resumed or repeated run) is reused only when
        # it verifies completely; otherwise the rename is what makes it appear, whole.
        f"if [ -e {q(final)} ]; then",
        f"  if (cd {q(final)} && sha256sum -c --quiet MANIFEST) >/dev/null 2>&1; then",
        f"    echo {q(MARK + 'reused')}",
        "  else",
        f"    echo {q(f'{final} exists but does not verify against its MANIFEST')} >&2; exit 1",
        "  fi",
        "else",
        f"  {cmd('mv', '-T', tree, final)}",
        f"  {cmd('chmod', 'a-w', final)}",
        "fi",
        f"echo {q(MARK + 'staged')} {q(release_id)}",
    ]
    segments: list[object] = [archive]
    if base is not None:
        segments.append(link_list)
    if host_files.tar:
        segments.append(host_files.tar)
    segments.extend(f.content for f in host_files.shared)
    return Script(step="stage", lines=tuple(body), stdin=Stdin(tuple(segments)))  # type: ignore[arg-type]


def _templates(
    layout: Layout,
    tree: str,
    run_id: str,
    files: HostFiles,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
) -> list[str]:
    """Write rendered templates so that none is readable by others for even a moment: each is
    created under umask 077 (tar told not to restore the archived mode), and only the files
    meant to be wider, which hold no secret, are chmod-ed afterwards. Shared ones are written
    to a temporary name beside their target and renamed over it, so the live app never reads
    half a file, and linked into the release like shared.files."""
    out: list[str] = []
    if files.tar:
        in_release = [f for f in files.files if not f.shared]
        # Parent directories hold nothing secret: made with the usual umask, like the release's.
        parents = sorted({posixpath.dirname(f.dest) for f in in_release} - {""})
        if parents:
            out.append(cmd("mkdir", "-p", *(posixpath.join(tree, p) for p in parents)))
        extract = cmd(
            "head", "-c", len(files.tar), Raw("|"), "tar", "-xf", "-", "-C", tree,
            "--no-same-owner", "--no-same-permissions",
        )  # fmt: skip
        out.append(f"(umask 077 && {extract})")
        out += [
            cmd("chmod", f"{f.mode:04o}", posixpath.join(tree, f.dest))
            for f in in_release
            if f.mode & ~0o700  # wider than owner-only (what umask 077 left)
        ]
    for f in files.shared:
        target = posixpath.join(layout.shared, f.dest)
        folder, name = posixpath.split(target)
        tmp = posixpath.join(folder, f".{name.lstrip('.')}.tmp-{run_id}")
        size = len(f.content)
        write = f'head -c {size} > {q(tmp)} && [ "$(stat -c %s {q(tmp)})" = {size} ]'
        failed = cmd("echo", f"writing {target} failed (short read or full disk)", Raw(">&2"))
        out += [
            cmd("mkdir", "-p", folder),
            f"(umask 077 && {write}) || {{ rm -f {q(tmp)}; {failed}; exit 1; }}",
        ]
        if f.mode != 0o600:  # the mode the redirect created it with under umask 077
            out.append(cmd("chmod", f"{f.mode:04o}", tmp))
        out.append(cmd("mv", "-fT", tmp, target))
        linked = f.dest in shared_files or any(
            f.dest == d or f.dest.startswith(d + "/") for d in shared_dirs
        )
        if not linked:
            link = posixpath.join(tree, f.dest)
            if posixpath.dirname(f.dest):
                out.append(cmd("mkdir", "-p", posixpath.dirname(link)))
            out += [cmd("rm", "-rf", link), cmd("ln", "-s", target, link)]
    return out


def migrate(layout: Layout, release_id: str, command: str, env: Mapping[str, str]) -> Script:
    """Run the playbook's migration command once, from the new release."""
    return Script(
        step="migrate",
        lines=lines(
            _step("migrate"),
            cmd("cd", layout.release(release_id)),
            _exports(env),
            command,
        ),
    )


def switch(
    layout: Layout,
    release_id: str,
    run_id: str,
    *,
    restart: str | None,
    env: Mapping[str, str],
) -> Script:
    """Point `current` at the release by renaming a fresh symlink over it (never unlink-then-
    link, so readers always see a complete release), then restart the app."""
    target = layout.release(release_id)
    tmp_link = posixpath.join(layout.root, f".current.{run_id}")
    body = [
        _step("switch"),
        f"if [ ! -d {q(target)} ]; then echo {q(f'release {target} is missing')} >&2;"
        f" exit {EXIT_MISSING_RELEASE}; fi",
        cmd("rm", "-f", tmp_link),
        cmd("ln", "-s", target, tmp_link),
        cmd("mv", "-T", tmp_link, layout.current),
    ]
    if restart:
        body += [_step("restart"), cmd("cd", target), *_exports(env), restart]
    body.append(f"echo {q(MARK + 'switched')} {q(release_id)}")
    return Script(step="switch", lines=tuple(body))


def hook(layout: Layout, point: str, command: str, env: Mapping[str, str]) -> Script:
    """A playbook hook on one host, run from the application root."""
    return Script(
        step=f"hook {point}",
        lines=lines(cmd("cd", layout.root), _exports({**env, "DEPLOY_HOOK": point}), command),
    )


def check_command(layout: Layout, command: str, env: Mapping[str, str]) -> Script:
    """A command health check, run in the live release; exit 0 means healthy."""
    return Script(
        step="health",
        lines=lines(cmd("cd", layout.current), _exports(env), command),
    )


def _best_effort_remove(*, sudo: bool) -> list[str]:
    """A shell function `remove PATH` that deletes a release or staging directory and never
    fails: what it cannot delete is reported as `@@cleanup PATH<TAB>OWNER<TAB>CAUSE` (the
    owner of the first entry not ours: root-owned files are the usual cause)."""
    body = [
        "remove() {",
        '  [ -e "$1" ] || [ -L "$1" ] || return 0',
        '  chmod -R u+w -- "$1" 2>/dev/null || true',
        '  if err=$(rm -rf -- "$1" 2>&1); then return 0; fi',
    ]
    if sudo:  # `cleanup: {sudo: true}`: files an app wrote as root; -n never prompts
        body.append('  if sudo -n rm -rf -- "$1" 2>/dev/null; then return 0; fi')
    body += [
        '  owner=$(find "$1" ! -user "$(id -u)" -printf \'%u\' -quit 2>/dev/null || true)',
        f'  printf \'%s %s\\t%s\\t%s\\n\' {q(MARK + "cleanup")} "$1" "$owner"'
        ' "$(printf \'%s\\n\' "$err" | head -n 1)"',
        "}",
    ]
    return body


def finish(
    layout: Layout,
    run_id: str,
    *,
    history: Sequence[str],
    prune: Sequence[str],
    remove_staged: Sequence[str] = (),
    sudo: bool = False,
) -> Script:
    """Record the outcome and release our lock, whatever cleanup does: then prune old
    releases and drop this tool's own debris, best effort.

    The lock is released by an EXIT trap, so a failing command or a dropped connection
    (SIGHUP/SIGPIPE) still gives it back. Once the history is written, a `finishing` file in
    the lock says the run's outcome is recorded, so a lock left by a finish that was killed
    outright is recognised (and taken over when stale, see `prepare`). Pruning stays under
    the lock so that no concurrent run can pick a release we are deleting. Nothing here can
    fail: what cannot be removed is reported as `@@cleanup` lines (`remove` above), and the
    next deploy retries it. `prune` and `remove_staged` are release ids decided locally from
    the recorded history; the script re-checks that none of them is what `current` points at.
    """
    unlock = _unlock_if_ours(layout, run_id)
    own_link = posixpath.join(layout.root, f".current.{run_id}")
    body: list[str] = [
        _step("finish"),
        f"trap {q(unlock)} EXIT",
        *_append_history(layout, history),
        f"if [ -d {q(layout.lock)} ]; then : > {q(posixpath.join(layout.lock, FINISHING))}"
        " 2>/dev/null || true; fi",
        _step("cleanup"),
        *_best_effort_remove(sudo=sudo),
    ]
    for release_id in (*remove_staged, *prune):
        path = layout.release(release_id)
        body.append(
            f'if [ "$(readlink {q(layout.current)} || true)" != {q(path)} ]; then '
            f"remove {q(path)}; fi"
        )
    body += [
        # We hold the lock, so nothing in our own staging directory belongs to a live run.
        f'for entry in {q(layout.staging)}/* {q(layout.staging)}/.[!.]*; do remove "$entry"; done',
        cmd("rm", "-f", own_link),
        # A run killed between `ln` and `mv` left its link: ours only if it is one.
        f"for link in {q(layout.root)}/.current.{_OWN_LINK}; do"
        f' if [ -L "$link" ]; then case "$(readlink "$link")" in {q(layout.releases + "/")}*)'
        ' rm -f "$link" ;; esac; fi; done',
        unlock,
        "trap - EXIT",
        f"echo {q(MARK + 'finished')}",
    ]
    return Script(step="finish", lines=tuple(body))


def unlock(layout: Layout, *, run_id: str | None) -> Script:
    """Release the lock: ours only (by run id), or whoever holds it when `run_id` is None."""
    info = posixpath.join(layout.lock, "info")
    if run_id is not None:
        body = [_unlock_if_ours(layout, run_id)]
    else:
        body = [
            f"if [ -d {q(layout.lock)} ]; then echo {q(MARK + 'lockinfo')} "
            f'"$(cat {q(info)} 2>/dev/null | head -c 2000)"; rm -rf {q(layout.lock)}; fi',
        ]
    return Script(step="unlock", lines=tuple(body))


def push_flags(
    layout: Layout,
    run_id: str,
    *,
    content: bytes,
    history: Sequence[str],
    name: str = "flags.json",
) -> Script:
    """Replace `shared/<name>` with `content` (sent on stdin) without a deploy or a restart:
    written to a temporary name beside it, its size checked, then renamed over the old one,
    so an app reading it sees the old file or the new one, never part of either. Created with
    the deploy user's umask (the app must read it; it holds no secret). Then the history
    records are appended and our lock released, in the same session.
    """
    target = posixpath.join(layout.shared, name)
    tmp = posixpath.join(layout.shared, f".{name}.tmp-{run_id}")
    size = len(content)
    write = f'head -c {size} > {q(tmp)} && [ "$(stat -c %s {q(tmp)})" = {size} ]'
    failed = cmd("echo", f"writing {target} failed (short read or full disk)", Raw(">&2"))
    body = [
        _step("flags"),
        cmd("mkdir", "-p", layout.shared, layout.state),
        # We hold the lock: temporary files left by a killed push are debris.
        f"rm -f {q(layout.shared)}/.{q(name)}.tmp-*",
        f"{write} || {{ rm -f {q(tmp)}; {failed}; exit 1; }}",
        cmd("mv", "-fT", tmp, target),
        *_append_history(layout, history),
        _unlock_if_ours(layout, run_id),
        f"echo {q(MARK + 'flags pushed')} {q(str(size))}",
    ]
    return Script(step="flags", lines=tuple(body), stdin=Stdin((content,)))
