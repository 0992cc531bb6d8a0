"""How each tool is invoked for each scenario, and what it needs around the run (release ids
for the peers, Ansible's ControlPersist masters closed afterwards so their bytes count)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.peer_settings import app_settings, write_ansible_vars, write_pyinfra_data
from benchmarks.projects import Projects, env_name

ROOT = Path(__file__).resolve().parent.parent
OUR_BIN = ROOT / ".venv" / "bin"
PEERS_BIN = ROOT / "benchmarks" / ".peers-venv" / "bin"
# ansible.posix (for ansible-sync), extracted there by benchmarks/run from the `ansible` package.
PEERS_COLLECTIONS = PEERS_BIN.parent / "collections"

SCENARIOS = ("first", "redeploy", "rollback")
TOOLS = ("ours", "ansible", "pyinfra")  # and, on request, "pyinfra-sync", "ansible-sync"
# "ours-store" (OursStore) runs with `--modes ...,store`.


@dataclass
class Invocation:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    release: str | None = None  # the release this run should leave live (peers: known up front)
    close: object = None  # called after the final byte sample
    cleanup: list[Path] = field(default_factory=list)


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Ours:
    name = "ours"

    def __init__(self, projects: Projects) -> None:
        self.p = projects

    def invocation(self, scenario: str, size: int, seq: int) -> Invocation:
        env = _base_env()
        env["PATH"] = f"{OUR_BIN}:{env['PATH']}"
        task = ["rollback", "--playbook", "rollback"] if scenario == "rollback" else ["deploy"]
        argv = [str(OUR_BIN / "invoke"), *task, "--env", env_name(size), "--format", "json"]
        return Invocation(argv, self.p.ours, env)

    @staticmethod
    def live_release(output: str) -> str | None:
        for event in events(output):
            if event.get("event") == "RunFinished" and event.get("ok"):
                releases = set(event.get("releases", {}).values())
                return releases.pop() if len(releases) == 1 else None
        return None


class OursStore(Ours):
    """Ours with `artifacts: {store: s3}` (playbooks/store.yml): the release goes once into
    the S3-compatible store and every host downloads it (issue 18). Rollbacks move nothing."""

    name = "ours-store"

    def __init__(self, projects: Projects, keys: dict[str, str]) -> None:
        super().__init__(projects)
        self.keys = keys

    def invocation(self, scenario: str, size: int, seq: int) -> Invocation:
        inv = super().invocation(scenario, size, seq)
        inv.env.update(self.keys)
        if scenario != "rollback":
            inv.argv += ["--playbook", "store"]
        return inv


def events(output: str) -> list[dict[str, Any]]:
    out = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _release_id(tool: str, seq: int) -> str:
    # Sorts in deploy order, like ours: a UTC stamp first.
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{tool[:2]}{seq:04d}"


class Ansible:
    name = "ansible"

    def __init__(self, projects: Projects, control_dir: Path) -> None:
        self.p = projects
        self.control_dir = control_dir
        cfg = (self.p.ansible / "ansible.cfg").read_text()
        (self.p.ansible / "ansible.cfg").write_text(cfg.replace("@CONTROL_DIR@", str(control_dir)))
        write_ansible_vars(app_settings(self.p.ours / "playbooks" / "deploy.yml"), self.p.ansible)
        self.history: list[str] = []

    def invocation(self, scenario: str, size: int, seq: int) -> Invocation:
        env = _base_env()
        env["PATH"] = f"{PEERS_BIN}:{env['PATH']}"
        env["ANSIBLE_CONFIG"] = str(self.p.ansible / "ansible.cfg")
        env["ANSIBLE_HOME"] = str(self.p.ansible / ".ansible-home")
        env["ANSIBLE_FORCE_COLOR"] = "0"
        env["ANSIBLE_COLLECTIONS_PATH"] = str(PEERS_COLLECTIONS)
        self.control_dir.mkdir(parents=True, exist_ok=True)
        inventory = f"inventories/{env_name(size)}.yml"
        playbook = str(PEERS_BIN / "ansible-playbook")
        if scenario == "rollback":
            argv = [playbook, "-i", inventory, "rollback.yml"]
            release = self.history[-2] if len(self.history) >= 2 else None
            return Invocation(argv, self.p.ansible, env, release, self.close_masters)
        release = _release_id(self.name, seq)
        if scenario == "first":
            self.history = []
        self.history.append(release)
        archive = self.p.ansible / "artifacts" / f"{release}.tar.gz"
        archive.parent.mkdir(exist_ok=True)
        argv = [
            playbook,
            "-i",
            inventory,
            "deploy.yml",
            "-e",
            f"release_id={release}",
            "-e",
            f"archive={archive}",
            "-e",
            f"source_dir={self.p.tree}",
        ]
        return Invocation(argv, self.p.ansible, env, release, self.close_masters, [archive])

    def close_masters(self) -> None:
        """`ssh -O exit` every ControlPersist master, then wait for them to go."""
        sockets = list(self.control_dir.glob("*")) if self.control_dir.exists() else []
        for sock in sockets:
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "benchmark-host"],
                capture_output=True,
                check=False,
                timeout=10,
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(s.exists() for s in sockets):
            time.sleep(0.05)


class Pyinfra:
    name = "pyinfra"

    def __init__(self, projects: Projects) -> None:
        self.p = projects
        self.history: list[str] = []
        write_pyinfra_data(app_settings(self.p.ours / "playbooks" / "deploy.yml"), self.p.pyinfra)

    def invocation(self, scenario: str, size: int, seq: int) -> Invocation:
        env = _base_env()
        env["PATH"] = f"{PEERS_BIN}:{env['PATH']}"
        inventory = f"inventories/{env_name(size)}.py"
        pyinfra = str(PEERS_BIN / "pyinfra")
        if scenario == "rollback":
            release = self.history[-2] if len(self.history) >= 2 else None
            return Invocation(
                [pyinfra, "-y", inventory, "rollback.py"], self.p.pyinfra, env, release
            )
        release = _release_id(self.name, seq)
        if scenario == "first":
            self.history = []
        self.history.append(release)
        archive = self.p.pyinfra / "artifacts" / f"{release}.tar.gz"
        archive.parent.mkdir(exist_ok=True)
        argv = [
            pyinfra,
            "-y",
            inventory,
            "deploy.py",
            "--data",
            f"release_id={release}",
            "--data",
            f"archive={archive}",
            "--data",
            f"source_dir={self.p.tree}",
        ]
        return Invocation(argv, self.p.pyinfra, env, release, None, [archive])


class PyinfraSync(Pyinfra):
    """pyinfra sending only changed files (`files.rsync` into a cached copy on each host,
    hard-linked into the release): the fairness row next to our delta uploads (issue 18).
    `--tools ...,pyinfra-sync`. Needs rsync on the controller and the hosts."""

    name = "pyinfra-sync"

    def invocation(self, scenario: str, size: int, seq: int) -> Invocation:
        inv = super().invocation(scenario, size, seq)
        if scenario != "rollback":
            inv.argv[inv.argv.index("deploy.py")] = "deploy_sync.py"
            inv.cleanup = []  # no archive is built
        return inv


class AnsibleSync(Ansible):
    """Ansible sending only changed files (`ansible.posix.synchronize` into a cached copy on
    each host, hard-linked into the release): see peers/ansible/deploy-sync.yml. Needs the
    ansible.posix collection (PEERS_COLLECTIONS) and rsync on the controller and the hosts."""

    name = "ansible-sync"

    def invocation(self, scenario: str, size: int, seq: int) -> Invocation:
        inv = super().invocation(scenario, size, seq)
        if scenario != "rollback":
            inv.argv[inv.argv.index("deploy.yml")] = "deploy-sync.yml"
            inv.cleanup = []
        return inv


def versions() -> dict[str, str]:
    def out(argv: list[str]) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except OSError as exc:
            return f"unavailable ({exc})"
        return (proc.stdout or proc.stderr).strip()

    commit = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", str(ROOT), "status", "--porcelain", "--", "deployer"])
    return {
        "deployer commit": commit + (" + uncommitted changes in deployer/" if dirty else ""),
        "deployer": out(
            [
                str(OUR_BIN / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('shipfleet'))",
            ]
        ),
        "python (ours)": out(
            [str(OUR_BIN / "python"), "-c", "import sys; print(sys.version.split()[0])"]
        ),
        "paramiko (ours)": out(
            [str(OUR_BIN / "python"), "-c", "import paramiko; print(paramiko.__version__)"]
        ),
        "fabric": out(
            [
                str(OUR_BIN / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('fabric'))",
            ]
        ),
        "ansible-core": out([str(PEERS_BIN / "ansible-playbook"), "--version"]).splitlines()[0],
        "ansible.posix (ansible-sync)": _collection_version("ansible", "posix"),
        "pyinfra": out([str(PEERS_BIN / "pyinfra"), "--version"]),
        "rsync (controller, the -sync rows)": (out(["rsync", "--version"]) or "?").splitlines()[0],
        "python (peers)": out(
            [str(PEERS_BIN / "python"), "-c", "import sys; print(sys.version.split()[0])"]
        ),
        "paramiko (pyinfra)": out(
            [str(PEERS_BIN / "python"), "-c", "import paramiko; print(paramiko.__version__)"]
        ),
        "OpenSSH client (Ansible, stream baseline)": out(["ssh", "-V"]),
    }


def _collection_version(namespace: str, name: str) -> str:
    manifest = PEERS_COLLECTIONS / "ansible_collections" / namespace / name / "MANIFEST.json"
    try:
        return str(json.loads(manifest.read_text())["collection_info"]["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
