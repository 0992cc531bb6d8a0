"""`group_vars/` and `host_vars/` beside an inventory source, found and read as Ansible's
`host_group_vars` plugin does: `<name>`, `<name>.yml`, `.yaml` or `.json` (the first of these
that exists), or a `<name>/` directory whose files are read in name order, later files winning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer.config.ansible.builder import checked_vars
from deployer.config.yamlfile import Node, display_path, load_yaml, read_text, refuse_vault_file

__all__ = ["VarsDirs"]

_EXTENSIONS = (".yml", ".yaml", ".json")


class VarsDirs:
    """The variables of `<base>/group_vars/` and `<base>/host_vars/`, read on first use: only
    the files of groups and hosts the inventory holds are ever opened, as in Ansible."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._read: dict[Path, dict[str, Any]] = {}
        self._merged: dict[tuple[str, str], dict[str, Any]] = {}  # one lookup per group/host

    def group(self, name: str) -> dict[str, Any]:
        return self._vars("group_vars", name)

    def host(self, name: str) -> dict[str, Any]:
        return self._vars("host_vars", name)

    def files(self, kind: str, name: str) -> list[Path]:
        """The files holding `name`'s variables, in the order they apply."""
        folder = self.base / kind
        if not folder.is_dir() or name.startswith("."):
            return []
        for suffix in ("", *_EXTENSIONS):  # no extension first: a directory wins over a file
            path = folder / f"{name}{suffix}"
            if path.is_dir():
                return _directory_files(path)
            if path.is_file():
                return [path]
        return []

    def _vars(self, kind: str, name: str) -> dict[str, Any]:
        if (kind, name) not in self._merged:
            merged: dict[str, Any] = {}
            for path in self.files(kind, name):
                if path not in self._read:
                    self._read[path] = _read_vars_file(path)
                merged.update(self._read[path])
            self._merged[kind, name] = merged
        return self._merged[kind, name]


def _directory_files(folder: Path) -> list[Path]:
    """Files in name order, subdirectories (without an extension) recursed in place; hidden
    files, editor backups (`~`) and other extensions skipped, as Ansible does."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_directory_files(entry))
        elif entry.is_file() and (not entry.suffix or entry.suffix in _EXTENSIONS):
            found.append(entry)
    return found


def _read_vars_file(path: Path) -> dict[str, Any]:
    shown = display_path(path)
    text = read_text(path, shown)
    refuse_vault_file(text, shown)
    root = Node.root(load_yaml(text, shown), shown)
    if root.is_null:
        return {}
    hint = "a group_vars/host_vars file is a mapping of variables, e.g. ansible_user: deploy"
    entries = root.mapping(hint=hint).items()
    return checked_vars(
        [(key, node.plain(), node.location()) for key, node in entries], host_level=False
    )
