"""Ansible inventories read into frozen Hosts and groups, and --limit.

Finds an environment's sources (one file, or a directory of YAML, INI and script sources, as
Ansible takes `-i DIR`) and the `group_vars/` and `host_vars/` beside them; the formats
themselves are read in `deployer.config.ansible`, Terraform and scripts in sources.py, all into
one builder, so precedence and group membership are the same for each. Parsing only: this
module never resolves names or connects.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from deployer.config.ansible.builder import Builder, SourceSink
from deployer.config.ansible.ini import read_ini
from deployer.config.ansible.vars_dirs import VarsDirs
from deployer.config.ansible.yamlform import read_yaml
from deployer.config.model import Host, Inventory
from deployer.config.sources import (
    SOURCE_SUFFIXES,
    TFOUTPUT,
    TFSTATE,
    VARS_SUFFIX,
    is_source,
    read_script,
    read_source,
    reject_companion,
)
from deployer.config.yamlfile import display_path, read_text, refuse_vault_file
from deployer.errors import ConfigError

__all__ = [
    "available_environments",
    "load_inventory",
    "parse_inventory_ini",
    "parse_inventory_yaml",
    "select_hosts",
]

_YAML_SUFFIXES = (".yml", ".yaml")
_INI_SUFFIXES = (".ini", "")
_VARS_DIRS = ("group_vars", "host_vars")
_ENV_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_GLOB_CHARS = set("*?[")
# Inside an inventory directory, what Ansible skips: hidden entries, its vars directories,
# and these endings (INVENTORY_IGNORE_EXTS).
_SKIPPED_NAMES = (*_VARS_DIRS, "vars_plugins")
_SKIPPED_ENDINGS: tuple[str, ...] = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md")
_SKIPPED_ENDINGS += (".txt", ".rst", ".orig", ".cfg", ".retry")
_DIR_YAML = (*_YAML_SUFFIXES, ".json")


# ---------------------------------------------------------------- loading


def available_environments(inventories_dir: Path) -> tuple[str, ...]:
    """Environment names with an inventory file or directory in the directory, sorted."""
    if not inventories_dir.is_dir():
        return ()
    suffixes = (*_YAML_SUFFIXES, ".ini", *SOURCE_SUFFIXES)
    names = set()
    for entry in inventories_dir.iterdir():
        if entry.name.startswith(".") or entry.name in _VARS_DIRS:
            continue
        if entry.is_dir():
            names.add(entry.name)
            continue
        if not entry.is_file() or entry.name.endswith(VARS_SUFFIX):
            continue
        suffix = next((s for s in suffixes if entry.name.endswith(s)), None)
        if suffix is not None:
            names.add(entry.name[: -len(suffix)])
        elif not entry.suffix:
            names.add(entry.name)
    return tuple(sorted(names))


def load_inventory(inventories_dir: Path, env: str) -> Inventory:
    """Read `<dir>/<env>.yml|.yaml|.ini` or `<dir>/<env>` (INI, or a script when executable),
    a source of sources.py (`<env>.tfstate`, `<env>.tfoutput.json`, `<env>.py|.sh`), or the
    directory `<dir>/<env>/` holding any mix of YAML, INI and script sources. Then the
    `group_vars/` and `host_vars/` beside the source: in the environment's directory, or in
    `<dir>` for a single file. Paths in host variables resolve against the project root, the
    inventories directory's parent."""
    shown = display_path(inventories_dir)
    if not inventories_dir.is_dir():
        raise ConfigError(
            "inventory directory not found",
            file=shown,
            hint="create it with one inventory file or directory per environment, e.g. staging.yml",
        )
    found: list[tuple[str, Path]] = []
    if _ENV_NAME.fullmatch(env) and env not in _VARS_DIRS:
        suffixes = (*_YAML_SUFFIXES, *_INI_SUFFIXES, *SOURCE_SUFFIXES)
        found = [(s, inventories_dir / f"{env}{s}") for s in suffixes]
        found = [(s, path) for s, path in found if path.is_file() or (s == "" and path.is_dir())]
    if not found:
        envs = ", ".join(available_environments(inventories_dir)) or "none"
        raise ConfigError(
            f"no inventory for environment '{env}' (available: {envs})",
            file=shown,
            hint=f"run with --env one of: {envs}",
        )
    if len(found) > 1:
        names = ", ".join(path.name + ("/" if path.is_dir() else "") for _, path in found)
        raise ConfigError(
            f"environment '{env}' has several inventory files: {names}",
            file=shown,
            hint="keep only one of them",
        )
    suffix, path = found[0]
    root = Path(os.path.abspath(inventories_dir)).parent
    builder = Builder(display_path(path), root)
    if path.is_dir():
        if not _read_directory(path, builder, root):
            raise ConfigError(
                "no inventory source in this directory",
                file=builder.file,
                hint="add a hosts file (YAML or INI) beside its group_vars/ and host_vars/",
            )
        return builder.inventory(env, VarsDirs(path))
    if is_source(path, suffix):
        read_source(path, env, root, SourceSink(builder))
    else:
        reject_companion(inventories_dir, env)
        _read_file(path, builder, yaml=path.suffix in _YAML_SUFFIXES)
    return builder.inventory(env, VarsDirs(inventories_dir))


def _read_file(path: Path, builder: Builder, *, yaml: bool) -> None:
    file = display_path(path)
    text = read_text(path, file)
    refuse_vault_file(text, file)
    (read_yaml if yaml else read_ini)(text, file, builder)


def _read_directory(folder: Path, builder: Builder, root: Path) -> int:
    """Every source in the directory, in name order, subdirectories recursed, as Ansible reads
    `-i DIR`. Unlike Ansible, a file no format can read is an error, not a warning. Returns
    how many sources were read."""
    count = 0
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith(".") or name in _SKIPPED_NAMES or name.endswith(_SKIPPED_ENDINGS):
            continue
        if entry.is_dir():
            count += _read_directory(entry, builder, root)
            continue
        if name.endswith((TFSTATE, TFOUTPUT)):
            raise ConfigError(
                "Terraform sources are read as a whole environment, not inside a directory",
                file=display_path(entry),
                hint=f"move it to {display_path(folder.parent)}/<env>{entry.suffix}",
            )
        if os.access(entry, os.X_OK):
            read_script(entry, root, SourceSink(builder))
        else:
            _read_file(entry, builder, yaml=entry.suffix in _DIR_YAML)
        count += 1
    return count


def parse_inventory_yaml(
    text: str, path: str, env: str, *, project_root: Path | None = None
) -> Inventory:
    """Parse Ansible's YAML inventory shape: `all:` with hosts, vars and children."""
    builder = Builder(path, _default_root(path, project_root))
    read_yaml(text, path, builder)
    return builder.inventory(env)


def parse_inventory_ini(
    text: str, path: str, env: str, *, project_root: Path | None = None
) -> Inventory:
    """Parse Ansible's INI inventory: ungrouped hosts, [group], [group:vars], [group:children]."""
    builder = Builder(path, _default_root(path, project_root))
    read_ini(text, path, builder)
    return builder.inventory(env)


def _default_root(path: str, project_root: Path | None) -> Path:
    if project_root is not None:
        return project_root
    return Path(os.path.abspath(path)).parent.parent


# ---------------------------------------------------------------- --limit


def select_hosts(inventory: Inventory, limit: str | None) -> tuple[Host, ...]:
    """Hosts matching an Ansible-like limit, in inventory order.

    Patterns are separated by ',' (or ':' when there is no ','); each is a host name, a group
    name or a glob over both. Plain patterns are united, then '&pattern' intersects and
    '!pattern' excludes. A pattern that matches nothing is an error, not a silent no-op.
    """
    if not inventory.hosts:
        raise ConfigError("no hosts defined", file=inventory.path)
    if limit is None or limit.strip() in ("", "all", "*"):
        return inventory.hosts
    host_names = {host.name for host in inventory.hosts}
    if "," in limit:
        patterns = limit.split(",")
    elif limit.strip() in host_names:  # an IPv6 host name holds ':'
        patterns = [limit]
    else:
        patterns = limit.split(":")
    patterns = [pattern.strip() for pattern in patterns if pattern.strip()]
    if not patterns:
        raise _limit_error(inventory, f"--limit '{limit}' holds no pattern")

    included: set[str] | None = None
    selected = set(host_names)
    excluded: set[str] = set()
    for pattern in patterns:
        if pattern[0] == "!":
            excluded |= _match(inventory, pattern[1:])
        elif pattern[0] == "&":
            selected &= _match(inventory, pattern[1:])
        else:
            included = (included or set()) | _match(inventory, pattern)
    if included is not None:
        selected &= included
    selected -= excluded
    hosts = tuple(host for host in inventory.hosts if host.name in selected)
    if not hosts:
        raise _limit_error(inventory, f"--limit '{limit}' selects no hosts")
    return hosts


def _match(inventory: Inventory, pattern: str) -> set[str]:
    """Host names matched by one pattern: a host, a group, or a glob over both."""
    if not pattern:
        raise _limit_error(inventory, "--limit holds an empty pattern after '!' or '&'")
    names = [host.name for host in inventory.hosts]
    if _GLOB_CHARS & set(pattern):
        hosts = {name for name in names if fnmatch.fnmatchcase(name, pattern)}
        groups = [name for name in inventory.groups if fnmatch.fnmatchcase(name, pattern)]
    else:
        hosts = {pattern} & set(names)
        groups = [pattern] if pattern in inventory.groups else []
    for group in groups:
        hosts.update(inventory.groups[group])
    if not hosts and not groups:
        raise _limit_error(inventory, f"--limit pattern '{pattern}' matches no host or group")
    return hosts


def _limit_error(inventory: Inventory, reason: str) -> ConfigError:
    return ConfigError(
        f"{reason} (groups: {', '.join(inventory.groups)})",
        file=inventory.path,
        hint="check --limit: host names, group names or globs like 'web*', separated by ','; "
        "'!pattern' excludes, '&pattern' intersects",
    )
