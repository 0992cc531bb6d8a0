"""The stage step: receive the release on stdin, verify it, assemble it in staging and rename
it into `releases/<id>`. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deployer.release import MANIFEST, RELEASE_ID_RE
from deployer.remote.scripts.common import (
    EXIT_CHECKSUM,
    EXIT_UNSAFE_LAYOUT,
    EXIT_VERIFY,
    MARK,
    HostFiles,
    Layout,
    _or_explain,
    _step,
)
from deployer.remote.shell import Raw, Script, Stdin, cmd, q

if TYPE_CHECKING:
    from deployer.artifacts.fetch import Fetch


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
    fetch: Fetch | None = None,
) -> Script:
    """Receive the release on stdin, verify it, assemble it in staging, then rename it into
    `releases/<id>`. Nothing under `releases/` is ever partial: the rename is the last step.
    With `fetch`, the host downloads the archive from an artifact store itself (its URL comes
    on stdin), streamed into the same verification.

    With `base`, the archive is a delta: the files named in `link_list` (gzip'd, NUL-separated)
    are hard-linked from `releases/<base>` instead of travelling."""
    tmp = posixpath.join(layout.staging, f"{release_id}.{run_id}")
    tree = posixpath.join(tmp, "tree")
    final = layout.release(release_id)
    replaced = posixpath.join(tmp, "replaced")
    # One pass over the archive as it arrives: `tee` feeds tar and sha256sum at once, so it
    # is never written to disk, read back, or read twice. tar unpacks into staging only;
    # the checksum is judged before anything else happens, and a tree whose archive did not
    # match is never renamed in (the trap removes it). `tee -p` keeps hashing when tar stops
    # early (a full disk), so the whole archive is read and the real cause is reported.
    # fd 3 carries the archive to tar, fd 4 the checksum out of the command substitution;
    # its status is tar's.
    status = posixpath.join(tmp, "fetch.status")
    receive = (
        "{ { "
        + (fetch.command(status) + " | " if fetch else "")
        + cmd("head", "-c", archive_size, Raw("|"), "tee", "-p", "/dev/fd/3", Raw("|"))
        + " sha256sum >&4; } 3>&1 | "
        + cmd("tar", "-xzf", "-", "-C", tree, "--no-same-owner", Raw(">&2"))
        + "; } 4>&1"
    )
    body: list[str] = [
        # Whatever happens, leave no staging debris behind.
        f"trap {q(f'chmod -R u+w {q(tmp)} 2>/dev/null; rm -rf {q(tmp)}')} EXIT",
        _step("download" if fetch else "upload"),
        cmd("rm", "-rf", tmp),
        cmd("mkdir", "-p", tree),
        "unpacked=yes",
        f"sum=$({receive}) || unpacked=no",
        *([fetch.check(status, archive_sha256)] if fetch else []),
        f'if [ "${{sum%% *}}" != {q(archive_sha256)} ];'
        f" then echo {q(f'checksum mismatch for the uploaded release archive ({release_id})')}"
        f" >&2; exit {EXIT_CHECKSUM}; fi",
        _or_explain('[ "$unpacked" = yes ]', f"unpacking into {tree}", tmp),
    ]
    if base is not None:
        if not RELEASE_ID_RE.fullmatch(base):
            raise ValueError(f"not a release id: {base!r}")
        body += [
            _step("link"),
            f"head -c {len(link_list)} | gzip -dc | (cd {q(layout.release(base))} &&"
            f" xargs -0 -r cp -l --parents -t {q(tree)} --)",
        ]
    # The tree is checked against the MANIFEST that came inside the archive (whose sha256 was
    # just judged), never one already on the host. What came in the archive is proven by that
    # sha256 and tar's exit status; a delta's linked files are the base release's inodes,
    # which may have been edited in place since: each is hashed unless the base's record
    # vouches for it (see `verify_tree`). Templates and shared links come after: they are
    # not in the MANIFEST.
    record = posixpath.join(tmp, "record")
    body += [
        _step("verify"),
        *verify_tree(
            tree,
            f"staged release {release_id}",
            record=record,
            base_record=None if base is None else record_path(layout, base),
            records=records_dir(layout),
        ),
    ]
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
        # The caller reuses an existing `releases/<id>` only after `verify_release` passed; one
        # still here did not (or appeared since): it is moved aside (into staging, where the
        # trap removes it) and this verified tree takes its place.
        f"if [ -e {q(final)} ] || [ -L {q(final)} ]; then",
        f"  [ -L {q(final)} ] || chmod u+w {q(final)}",
        f"  {cmd('mv', '-T', final, replaced)}",
        f"  echo {q(MARK + 'replaced')}",
        "fi",
        # A record left by an earlier tree of this id must never vouch for this one.
        f"[ -L {q(records_dir(layout))} ] || {cmd('rm', '-f', record_path(layout, release_id))}",
        cmd("mv", "-T", tree, final),
        cmd("chmod", "a-w", final),
        *_keep_record(layout, release_id, record),
        f"echo {q(MARK + 'staged')} {q(release_id)}",
    ]
    segments: list[object] = [fetch.stdin() if fetch else archive]
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
        size = len(f.content)
        # A name nobody can predict, created by mktemp (O_EXCL, mode 0600) in the target's
        # own directory, none of whose components below shared/ may be a symlink: a user
        # who can write there cannot plant a link that receives the secret.
        write = f'head -c {size} > "$tmp" && [ "$(stat -c %s "$tmp")" = {size} ]'
        failed = cmd("echo", f"writing {target} failed (short read or full disk)", Raw(">&2"))
        refuse = _refuse_symlinked_dirs(layout.shared, folder)
        out += [
            # Checked before mkdir (which would create through a link) and after it.
            *refuse,
            cmd("mkdir", "-p", folder),
            *refuse,
            f"tmp=$(mktemp -p {q(folder)} {q('.' + name.lstrip('.') + '.tmp.XXXXXXXXXX')})",
            f'(umask 077 && {write}) || {{ rm -f "$tmp"; {failed}; exit 1; }}',
        ]
        if f.mode != 0o600:  # the mode mktemp created it with
            out.append(f'chmod {f.mode:04o} "$tmp"')
        out.append(f'mv -fT "$tmp" {q(target)}')
        linked = f.dest in shared_files or any(
            f.dest == d or f.dest.startswith(d + "/") for d in shared_dirs
        )
        if not linked:
            link = posixpath.join(tree, f.dest)
            if posixpath.dirname(f.dest):
                out.append(cmd("mkdir", "-p", posixpath.dirname(link)))
            out += [cmd("rm", "-rf", link), cmd("ln", "-s", target, link)]
    return out


def verify_tree(
    tree: str, what: str, *, record: str, base_record: str | None, records: str
) -> list[str]:
    """Check a freshly unpacked (and, for a delta, linked) tree against its MANIFEST, and write
    the tree's record to `record`: one line `sha256 inode size mtime path` per file.

    Every path the MANIFEST lists is a regular file in the tree and the tree holds no other
    regular file but the MANIFEST (a listed path that is a symlink, a file tar never wrote or
    one slipped in all fail). Contents: what came in the archive is proven by the archive's
    sha256 and tar's exit status, so it is not read again. With `base_record` (a delta), a
    file whose sha256 (in this MANIFEST), inode, size, mtime and path all appear in the base
    release's record is the very inode verified when the base was staged, unchanged as far as
    its size and mtime tell; every other file (an edited or replaced linked one, the ones the
    delta carried, all of them when the base has no record) is hashed with `sha256sum -c`.
    Exits EXIT_VERIFY naming what differs."""
    manifest = posixpath.join(tree, MANIFEST)
    todo = record + ".todo"
    bad = f"{what} does not match the MANIFEST it must match"
    fail = f"{{ echo {q(bad)} >&2; exit {EXIT_VERIFY}; }}"
    delta = base_record is not None
    out = []
    if base_record is not None:
        # A record directory that is a symlink is not ours to read (nor, later, to write).
        out.append(
            f'known={q(base_record)}; if [ -L {q(records)} ] || [ ! -f "$known" ];'
            " then known=/dev/null; fi"
        )
    known = '"$known"' if delta else "/dev/null"
    # One `find` and one awk over the tree, whatever its size. Paths never hold a newline or a
    # backslash (checked when the release is built), so lines are safe; LC_ALL=C: bytes.
    out.append(
        f"(cd {q(tree)} && find . -type f -printf '%i %s %T@ %P\\n')"
        f" | LC_ALL=C awk -v full={0 if delta else 1} -v rec={q(record)} -v todo={q(todo)}"
        f" {q(_CHECK_TREE)} {q(manifest)} {known} - || {fail}"
    )
    if delta:
        out.append(
            f"if [ -s {q(todo)} ]; then (cd {q(tree)} && sha256sum -c --quiet --strict"
            f" {q(todo)}) >&2 || {fail}; fi"
        )
    return out


# Arguments: the MANIFEST, the base's record (or /dev/null), then `find -printf '%i %s %T@ %P'`
# of the tree on stdin. Writes the tree's record to `rec` and, unless `full`, the MANIFEST
# lines of files the base's record does not vouch for to `todo`.
_CHECK_TREE = (
    "FILENAME == ARGV[1] { sha[substr($0, 67)] = substr($0, 1, 64); n++; next }"
    " FILENAME == ARGV[2] { known[$0] = 1; next }"
    ' { p = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", p); if (p == "MANIFEST") next;'
    ' if (!(p in sha)) { print "not in the MANIFEST: " p > "/dev/stderr"; bad = 1; next }'
    ' seen++; line = sha[p] " " $0; print line > rec;'
    ' if (full != 1 && !(line in known)) print sha[p] "  " p > todo }'
    ' END { printf "" > rec; printf "" > todo;'
    ' if (seen != n) { print n - seen " file(s) of the MANIFEST missing or not regular"'
    ' > "/dev/stderr"; bad = 1 } exit bad }'
)


def _keep_record(layout: Layout, release_id: str, record: str) -> list[str]:
    """Keep the verified tree's record beside the releases, for the next delta to trust its
    unchanged inodes, and drop the records of releases that are gone. Best effort: a missing
    record only means the next delta hashes every linked file."""
    records = records_dir(layout)
    return [
        f"if [ ! -L {q(records)} ]; then {{ mkdir -p {q(records)}"
        f" && mv -f {q(record)} {q(record_path(layout, release_id))}"
        f" && for f in {q(records)}/{_RELEASE_ID_GLOB}; do"
        f' [ ! -f "$f" ] || [ -d {q(layout.releases)}/"${{f##*/}}" ] || rm -f "$f"; done; }}'
        " 2>/dev/null || true; fi",
    ]


_RELEASE_ID_GLOB = "????????T??????Z-???????"  # RELEASE_ID_RE's shape: never a foreign name


def records_dir(layout: Layout) -> str:
    """Where each release's record lives: what its files were when it was verified."""
    return posixpath.join(layout.state, "verified")


def record_path(layout: Layout, release_id: str) -> str:
    return posixpath.join(records_dir(layout), release_id)


def verify_release(
    layout: Layout, release_id: str, manifest_sha256: str, extra_files: int
) -> Script:
    """Whether an existing `releases/<id>` may be reused: its MANIFEST is the one this release
    was built with (by digest), every file matches it, and it holds no other regular file
    but its `extra_files` rendered templates. Prints `@@verified` or `@@unverified`; a
    release that does not verify is re-staged (and replaced), never trusted."""
    final = layout.release(release_id)
    manifest = posixpath.join(final, MANIFEST)
    return Script(
        step="verify",
        lines=(
            _step("verify"),
            f"if [ ! -L {q(final)} ] && [ -f {q(manifest)} ] && [ ! -L {q(manifest)} ]"
            f' && [ "$(sha256sum < {q(manifest)} | cut -c1-64)" = {q(manifest_sha256)} ]'
            f" && (cd {q(final)} && sha256sum -c --quiet --strict {MANIFEST}) >/dev/null 2>&1"
            f' && [ "$(cd {q(final)} && find . -type f | wc -l)"'
            f' = "$(( $(wc -l < {q(manifest)}) + 1 + {extra_files} ))" ]; then',
            f"  echo {q(MARK + 'verified')}",
            "else",
            f"  echo {q(MARK + 'unverified')}",
            "fi",
        ),
    )


def _refuse_symlinked_dirs(top: str, folder: str) -> list[str]:
    """Refuse `folder` if it or any directory between `top` and it is a symlink."""
    out = []
    path = folder
    while path.startswith(top + "/"):
        message = f"refusing to write into {folder}: {path} is a symbolic link"
        out.append(
            f"if [ -L {q(path)} ]; then echo {q(message)} >&2; exit {EXIT_UNSAFE_LAYOUT}; fi"
        )
        path = posixpath.dirname(path)
    return list(reversed(out))
