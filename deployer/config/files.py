"""The playbook's sections about a release's files: `source` (a directory or a git ref),
`shared` paths, and `templates` (where each goes, its mode, never hidden by a shared link)."""

from __future__ import annotations

import re

from deployer.config.fields import relative_path, section_fields
from deployer.config.model import Shared, Source, TemplateFile
from deployer.config.yamlfile import Node
from deployer.errors import ConfigError

__all__ = ["check_template_dests", "parse_shared", "parse_source", "parse_template_file"]

_OCTAL = re.compile(r"(?:0o)?([0-7]{1,4})")


def parse_source(node: Node) -> Source:
    fields = section_fields(node, ("path", "git", "ref", "subdir", "keep_bytecode"))
    keep = fields["keep_bytecode"].boolean() if "keep_bytecode" in fields else False
    has_path, has_git = "path" in fields, "git" in fields
    if has_path == has_git:
        raise node.error(
            "expected exactly one of 'path' or 'git'",
            hint="path: a local directory; git: a repository whose ref is archived",
        )
    if has_path:
        for key in ("ref", "subdir"):
            if key in fields:
                raise fields[key].error("only valid with 'git'")
        return Source(path=fields["path"].text(), keep_bytecode=keep)
    ref, subdir = fields.get("ref"), fields.get("subdir")
    return Source(
        git_repo=fields["git"].text(),
        ref=ref.text() if ref else None,
        subdir=relative_path(subdir) if subdir else None,
        keep_bytecode=keep,
    )


def parse_shared(node: Node) -> Shared:
    fields = section_fields(node, ("dirs", "files"))
    dirs, files = fields.get("dirs"), fields.get("files")
    return Shared(
        dirs=tuple(relative_path(item) for item in dirs.items()) if dirs else (),
        files=tuple(relative_path(item) for item in files.items()) if files else (),
    )


def parse_template_file(node: Node) -> TemplateFile:
    fields = section_fields(node, ("src", "dest", "mode", "shared"), required=("src", "dest"))
    mode, shared = fields.get("mode"), fields.get("shared")
    return TemplateFile(
        src=relative_path(fields["src"]),
        dest=relative_path(fields["dest"]),
        mode=_mode(mode) if mode else 0o644,
        where=fields["src"].location(),
        shared=shared.boolean() if shared else False,
    )


def check_template_dests(templates: tuple[TemplateFile, ...], shared: Shared) -> None:
    """A release template at or under a shared path would be replaced by the shared link
    right after it is written, silently: refuse it and point at `shared: true`."""
    for template in templates:
        if template.shared:
            continue
        for path in (*shared.dirs, *shared.files):
            if template.dest == path or template.dest.startswith(path + "/"):
                where = template.where
                raise ConfigError(
                    f"dest {template.dest!r} is under the shared path {path!r}, so the link to"
                    " shared/ would hide it",
                    file=where.file if where else None,
                    line=where.line if where else None,
                    key_path=where.key_path.removesuffix("src") + "dest" if where else None,
                    hint="add `shared: true` to write it into shared/ instead",
                )


def _mode(node: Node) -> int:
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads 0644 as octal but 644 as decimal 644 (= 0o1204): refuse the trap.
        if node.raw is not None and not node.raw.startswith("0"):
            raise node.error(
                f"{node.raw} is read as a decimal number",
                hint=f'write file modes as quoted octal strings, e.g. "0{node.raw}"',
            )
        mode = value
    elif isinstance(value, str) and (match := _OCTAL.fullmatch(value.strip())):
        mode = int(match.group(1), 8)
    else:
        raise node.expected('an octal file mode like "0644"')
    if not 0 <= mode <= 0o7777:
        raise node.error(f"must be between 0000 and 7777, got {oct(mode)}")
    return mode
