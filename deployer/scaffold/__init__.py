"""`shipfleet init`: a commented starting project written into a directory from the files
under scaffold/files/ (package data). It never overwrites a file that exists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

__all__ = ["DEFAULT_ENV", "FILES", "GITIGNORE", "Scaffolded", "application_name", "init_project"]

DEFAULT_ENV = "staging"
# (resource under scaffold/files/, where it goes in the project). Resources are named so that
# package data globs pick them up and no tool reads them as this package's own code.
FILES = (
    ("inventories/staging.yml", "inventories/staging.yml"),
    ("playbooks/deploy.yml", "playbooks/deploy.yml"),
    ("templates/app.env.j2", "templates/app.env.j2"),
    ("app/index.html", "app/index.html"),
    ("tasks.py.txt", "tasks.py"),
    ("github/workflows/deploy.yml", ".github/workflows/deploy.yml"),
)
GITIGNORE = "gitignore"  # lines appended to .gitignore when missing
_PLACEHOLDER = "__APPLICATION__"
_NOT_NAME = re.compile(r"[^a-z0-9_.-]+")


@dataclass
class Scaffolded:
    """What init did, by project-relative path."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # existed: left as they were
    gitignored: list[str] = field(default_factory=list)  # lines appended to .gitignore


def application_name(directory: Path) -> str:
    """The playbook's `application:` from the directory's name, made a valid one."""
    name = _NOT_NAME.sub("-", directory.resolve().name.lower()).strip("-_.")
    return name or "app"


def _resource(name: str) -> str:
    return files(__package__).joinpath("files", name).read_text(encoding="utf-8")


def init_project(root: Path) -> Scaffolded:
    """Write the starting project into `root`; existing files are skipped, not touched."""
    done = Scaffolded()
    application = application_name(root)
    for resource, dest in FILES:
        path = root / dest
        if path.exists() or path.is_symlink():
            done.skipped.append(dest)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _resource(resource).replace(_PLACEHOLDER, application)
        # "x": a file that appeared since the check is still never overwritten.
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
        done.written.append(dest)
    _gitignore(root, done)
    return done


def _gitignore(root: Path, done: Scaffolded) -> None:
    """Append the ignore lines the project lacks; a .gitignore is added to, never rewritten."""
    path = root / ".gitignore"
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    have = {line.strip() for line in existing.splitlines()}
    wanted = _resource(GITIGNORE).splitlines()
    new = [
        line for line in wanted if line.strip() and not line.startswith("#") and line not in have
    ]
    if not new:
        done.skipped.append(".gitignore")
        return
    comments = [line for line in wanted if line.startswith("#")]
    separator = ("\n" if existing.endswith("\n") else "\n\n") if existing else ""
    with path.open("a", encoding="utf-8") as out:
        out.write(separator + "\n".join([*comments, *new]) + "\n")
    done.gitignored.extend(new)
