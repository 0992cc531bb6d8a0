"""The releases the benchmark deploys (`--apps`): `light`, the generated app of tree.py (a
`python3 http.server`, restarts in a fraction of a second), and `django`, a Django project
with its dependencies vendored, served by gunicorn (django_app.py: restarts take seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks import django_app, tree
from benchmarks.tree import TreeInfo


@dataclass(frozen=True)
class App:
    name: str
    changed_file: str  # the one file a redeploy changes
    title: str

    def generate(self, root: Path, work: Path, seed: int) -> TreeInfo:
        """Write the release tree at `root` (cached); `work` holds downloads."""
        if self.name == "django":
            return django_app.generate(root, work / "wheels")
        return tree.generate(root, seed)


APPS = {
    "light": App("light", tree.CHANGED_FILE, "light app (generated, `python3 http.server`)"),
    "django": App(
        "django", django_app.CHANGED_FILE, "Django app (vendored Django + gunicorn, 2 workers)"
    ),
}
