"""Shared helpers for integration tests: a throwaway deploy project pointed at the test fleet,
and ways to look at hosts from outside the deployer (docker exec, plain HTTP)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from deployer import api
from deployer.events import Event
from deployer.sandbox import Fleet

REPO = Path(__file__).resolve().parents[2]
APP_ROOT = "/srv/sample-app"
HOSTS = ["web1", "web2", "web3", "web4"]


@dataclass
class Project:
    root: Path
    fleet: Fleet
    env: str = "test"

    @property
    def app(self) -> Path:
        return self.root / "app"

    def playbook(self, **changes: object) -> None:
        """Change top-level keys of this project's playbooks/deploy.yml (a copy of the repo's
        sample); mappings are merged one level deep, except `source` and an empty mapping
        (`hooks={}`: no hooks), which replace the key."""
        mine = self.root / "playbooks" / "deploy.yml"
        if mine.exists():
            book = yaml.safe_load(mine.read_text())
        else:
            book = yaml.safe_load((REPO / "playbooks" / "deploy.yml").read_text())
            book["source"] = {"path": "app"}
            book["health"]["deadline"] = 8
        for key, value in changes.items():
            if (
                key != "source"
                and value
                and isinstance(value, dict)
                and isinstance(book.get(key), dict)
            ):
                book[key] = {**book[key], **value}
            else:
                book[key] = value
        (self.root / "playbooks" / "deploy.yml").write_text(yaml.safe_dump(book, sort_keys=False))

    def load(self, limit: str | None = None) -> api.Loaded:
        return api.load(api.Project(self.root), self.env, limit=limit)

    def deploy(self, **kwargs: object) -> dict[str, str | None]:
        events: list[Event] = []
        result = api.deploy(self.load(), api.Options(reporters=[events.append]), **kwargs)
        assert isinstance(result, dict)
        return result

    def invoke(
        self, *args: str, timeout: float = 300, env: dict[str, str | None] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI, as a user would, from the project directory (`env`: variables
        to set or, when None, to remove)."""
        invoke = Path(sys.executable).with_name("invoke")
        environ: dict[str, str | None] = {**os.environ, "NO_COLOR": "1", **(env or {})}
        return subprocess.run(
            [str(invoke), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={key: value for key, value in environ.items() if value is not None},
        )

    # ------------------------------------------------------------------ looking at hosts

    def sh(self, host: str, command: str, *, user: str = "deploy") -> str:
        code, out = self.fleet.exec(host, command, user=user)
        assert code == 0, f"{host}: {command}: {out}"
        return out

    def current(self, host: str) -> str | None:
        code, out = self.fleet.exec(host, f"readlink {APP_ROOT}/current")
        return out.strip().rsplit("/", 1)[-1] if code == 0 else None

    def releases(self, host: str) -> list[str]:
        code, out = self.fleet.exec(host, f"ls -1 {APP_ROOT}/releases")
        return sorted(out.split()) if code == 0 else []

    def leftovers(self, host: str) -> list[str]:
        """Anything in staging, and temporary symlinks next to current."""
        code, out = self.fleet.exec(
            host,
            f"ls -A {APP_ROOT}/.deploy/staging 2>/dev/null;"
            f" ls -A {APP_ROOT} 2>/dev/null | grep '^\\.current' || true",
        )
        return out.split()

    def locked(self, host: str) -> bool:
        code, _ = self.fleet.exec(host, f"test -d {APP_ROOT}/.deploy/lock")
        return code == 0

    def history(self, host: str) -> list[dict[str, object]]:
        code, out = self.fleet.exec(host, f"cat {APP_ROOT}/.deploy/history.jsonl")
        return [json.loads(line) for line in out.splitlines() if line.strip()] if code == 0 else []

    def health(self, host: str) -> tuple[int, dict[str, object]]:
        address = self.fleet.host(host).address
        try:
            with urllib.request.urlopen(f"http://{address}:8000/health", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def complete(self, host: str, release: str) -> bool:
        """The release verifies against its own MANIFEST on the host."""
        code, out = self.fleet.exec(
            host, f"cd {APP_ROOT}/releases/{release} && sha256sum -c --quiet MANIFEST"
        )
        return code == 0


def assert_no_ssh_since(fleet: Fleet, since: float) -> None:
    """The hosts' own witness: no host's sshd saw even a connection attempt since `since`."""
    touched = {h: dict(c) for h, c in fleet.sshd_counts(since).items() if sum(c.values())}
    assert not touched, f"sshd logged activity: {touched}"


def make_project(root: Path, fleet: Fleet, hosts: list[str] = HOSTS) -> Project:
    for sub in ("inventories", "playbooks", "templates"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    groups = {"web": hosts, "migrate": [hosts[0]]}
    (root / "inventories" / "test.yml").write_text(fleet.inventory_yaml(groups))
    shutil.copy(REPO / "templates" / "app.ini.j2", root / "templates" / "app.ini.j2")
    shutil.copytree(
        REPO / "examples" / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "tasks.py").write_text("from deployer.tasks import ns  # noqa: F401\n")
    project = Project(root, fleet)
    project.playbook()
    return project


def make_sourced_project(root: Path, fleet: Fleet, hosts: list[str]) -> Project:
    """A project whose hosts the test gives by another inventory source (a Terraform state,
    an inventory script: `write_tfstate`, `write_inventory_script`); the connection settings
    sit in `inventories/test.vars.yml`, as the docs say."""
    project = make_project(root, fleet, hosts=hosts)
    inventories = project.root / "inventories"
    (inventories / "test.yml").unlink()  # two sources for one environment is an error
    settings = {
        "ansible_user": "deploy",
        "ansible_port": fleet.host(hosts[0]).port,
        "ssh_key_file": str(fleet.key_path),
        "ssh_known_hosts_file": str(fleet.known_hosts_path),
    }
    (inventories / "test.vars.yml").write_text(yaml.safe_dump(settings))
    return project


def write_tfstate(project: Project, tags: dict[str, dict[str, str]]) -> None:
    """inventories/test.tfstate: one aws_instance per fleet host named in `tags` (its
    address the host's, its tags these)."""
    instances = [
        {
            "index_key": i,
            "schema_version": 1,
            "attributes": {
                "id": f"i-{i:016x}",
                "private_ip": project.fleet.host(name).address,
                "tags": host_tags,
            },
        }
        for i, (name, host_tags) in enumerate(tags.items())
    ]
    resource = {"mode": "managed", "type": "aws_instance", "name": "app", "instances": instances}
    state = {"version": 4, "terraform_version": "1.7.5", "resources": [resource]}
    (project.root / "inventories" / "test.tfstate").write_text(json.dumps(state))


def write_inventory_script(project: Project, inventory: dict[str, object]) -> None:
    """inventories/test.py: an executable inventory that prints `inventory` for `--list`."""
    script = project.root / "inventories" / "test.py"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "assert sys.argv[1:] == ['--list'], sys.argv\n"
        f"print(json.dumps({inventory!r}))\n"
    )
    script.chmod(0o755)


@contextlib.contextmanager
def webhook_receiver(path: str) -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A webhook receiver on loopback: its URL (ending in `path`) and the JSON bodies it got."""
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}", received
    finally:
        server.shutdown()


def add_migration(project: Project, number: int, sql: str) -> None:
    """Make the next app version: a new migration, and the app requires it."""
    (project.app / "migrations" / f"{number:03d}_step.sql").write_text(sql)
    app = project.app / "app.py"
    text = app.read_text()
    import re

    app.write_text(re.sub(r"REQUIRED_SCHEMA = \d+", f"REQUIRED_SCHEMA = {number}", text))
    (project.app / "SCHEMA").write_text(f"{number}\n")  # what a rollback drill compares


def break_on(project: Project, hosts: list[str] | str) -> None:
    """Make the next release unhealthy on these hosts (or '*' for all)."""
    lines = ["*"] if hosts == "*" else [project.fleet.host(h).address for h in hosts]
    (project.app / "BROKEN_ON").write_text("\n".join(lines) + "\n")


def fix(project: Project) -> None:
    (project.app / "BROKEN_ON").unlink(missing_ok=True)
