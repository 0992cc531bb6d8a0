"""The checklist items judged from this machine alone: variables and secrets, the source,
the migration command's files in the release, notifications. Pure."""

from __future__ import annotations

import posixpath
import shlex

from deployer.events import CheckItem
from deployer.preflight.model import (
    CONFIG,
    FAIL,
    MIGRATION,
    NOTIFY,
    PASS,
    SKIP,
    SOURCE,
    WARN,
    GitState,
    LocalFacts,
    make_item,
)

_SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".rb", ".js", ".pl", ".php", ".sql")
_NOT_IN_A_PATH = set("$`{}*?=:<>|;&()~'\"\\")


def check_config(local: LocalFacts) -> CheckItem:
    if local.config_errors:
        remedy = (
            "define each variable (playbook vars: or the inventory) and make each secret"
            " resolvable (export its variable, fix its command): each error's hint says how"
        )
        return make_item(CONFIG, FAIL, local.config_errors, remedy)
    return make_item(
        CONFIG,
        PASS,
        f"rendered for {local.rendered_hosts} host(s); {local.secrets} secret(s) resolved",
    )


def check_source(local: LocalFacts) -> CheckItem:
    git = local.source
    if not isinstance(git, GitState):
        return make_item(SOURCE, SKIP, f"a directory ({git or 'source.path'}), not a git ref")
    short = git.commit[:7]
    if git.error:
        return make_item(SOURCE, WARN, f"git: {git.error}", "check the repository with git status")
    lines = []
    if git.dirty:
        lines.append(
            f"{len(git.dirty)} uncommitted change(s) in {git.repo}; the release is commit"
            f" {short}, not your working tree:"
        )
        lines += [f"  {line}" for line in git.dirty[:5]]
        if len(git.dirty) > 5:
            lines.append(f"  ... and {len(git.dirty) - 5} more")
    if not git.has_remote:
        lines.append(f"{git.repo} has no remote: commit {short} exists only on this machine")
    elif not git.remote_branches:
        lines.append(f"commit {short} is on no remote-tracking branch (not pushed)")
    if lines:
        remedy = "commit and push (git push), or deploy a ref that is pushed"
        return make_item(SOURCE, WARN, lines, remedy)
    on = ", ".join(git.remote_branches[:3])
    return make_item(SOURCE, PASS, f"commit {short}: working tree clean, pushed ({on})")


def check_migration(local: LocalFacts) -> CheckItem:
    if local.migrate is None:
        why = "no migrate.command" if local.planned else "not checked: the plan did not render"
        return make_item(MIGRATION, SKIP, why)
    host, command = local.migrate
    paths = path_words(command)
    if not paths:
        return make_item(MIGRATION, SKIP, f"no word of `{command}` names a file of the release")
    missing = [p for p in paths if p not in local.release_paths]
    if missing:
        detail = f"{host}: `{command}`: {', '.join(missing)} not in release {local.release_id}"
        remedy = (
            "add it to the source (committed and pushed, for a git ref) or fix migrate.command;"
            " if the command finds it elsewhere, deploy with --override migration"
        )
        return make_item(MIGRATION, FAIL, detail, remedy)
    return make_item(MIGRATION, PASS, f"{', '.join(paths)} in the release (runs on {host})")


def path_words(command: str) -> list[str]:
    """The words of a shell command that look like files of the release (`./x`, `x.py`,
    `bin/x`), relative to the release root (the command runs there; a plain `cd DIR` is
    followed). A heuristic: absolute paths and words with shell syntax are left alone."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: the remote shell will say so
        words = command.split()
    found: list[str] = []
    cwd: str | None = ""
    previous = ""
    for word in words:
        if previous == "cd":
            absolute = word.startswith("/") or bool(set(word) & _NOT_IN_A_PATH)
            cwd = None if absolute or cwd is None else posixpath.join(cwd, word)
        previous = word
        if cwd is None or word.startswith(("/", "-")) or set(word) & _NOT_IN_A_PATH:
            continue
        if not (word.startswith("./") or "/" in word or word.endswith(_SCRIPT_SUFFIXES)):
            continue
        path = posixpath.normpath(posixpath.join(cwd, word))
        if path in (".", "..") or path.startswith("../"):
            continue
        if path not in found:
            found.append(path)
    return found


def check_notify(local: LocalFacts) -> CheckItem:
    if local.notify_env is None:
        remedy = (
            "add notify: {webhook: {url_env: DEPLOY_WEBHOOK_URL}} to the playbook and export"
            " that variable (in CI, from its secret store)"
        )
        return make_item(
            NOTIFY, WARN, "notify.webhook is not set: nobody else hears of deploys", remedy
        )
    if not local.notify_set:
        detail = f"notify.webhook.url_env names {local.notify_env}, which is not set"
        return make_item(NOTIFY, FAIL, detail, f"export {local.notify_env}=<webhook URL>")
    if local.notify_plain_http:
        detail = (
            f"${local.notify_env} is a plain http:// URL: its token and every message cross"
            " the network unencrypted"
        )
        return make_item(NOTIFY, WARN, detail, "use the https:// URL the chat service gives")
    return make_item(NOTIFY, PASS, f"webhook from ${local.notify_env}")
