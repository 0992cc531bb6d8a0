"""What one benchmark run is made of, decided before anything is measured: its options
(`--apps`, `--modes`, sizes, runs), the release trees of the apps, each app's projects for
every tool, and the S3-compatible store that `--modes ...,store` deploys through."""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import transfer
from benchmarks.apps import APPS, App
from benchmarks.measure import NOT_MEASURED
from benchmarks.projects import Host, Projects, write_projects
from benchmarks.tools import Ansible, AnsibleSync, Ours, OursStore, Pyinfra, PyinfraSync
from deployer.sandbox.fleet import Fleet

MODES = ("ssh", "store")


def options(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 5 and 20, one run each (for development)"
    )
    parser.add_argument("--sizes", help="comma-separated fleet sizes (default 5,10,20,40)")
    parser.add_argument("--runs", type=int, help="runs per tool and size (default 3)")
    parser.add_argument(
        "--tools",
        default="ours,ansible,pyinfra",
        help="ours,ansible,pyinfra (default), also ansible-sync, pyinfra-sync; `ours` runs in"
        " every --modes",
    )
    parser.add_argument(
        "--apps", default="light,django", help="releases to deploy: light, django (default both)"
    )
    parser.add_argument(
        "--modes",
        default="ssh,store",
        help="our transfer modes: ssh (push through SSH), store (S3 stand-in); default both",
    )
    parser.add_argument(
        "--no-stream", action="store_true", help="skip the transfer-efficiency streams"
    )
    parser.add_argument("--seed", type=int, default=2026, help="light release tree seed")
    parser.add_argument("--work", type=Path)
    parser.add_argument(
        "--network",
        default="127.0.1",
        help="first three octets of the hosts' loopback addresses (default 127.0.1: .1, .2, ...)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="markdown report (default benchmarks/RESULTS.md; --quick: work/RESULTS-quick.md)",
    )
    return parser


@dataclass
class Setup:
    sizes: list[int]
    runs: int
    apps: list[App]
    modes: list[str]
    tools: list[str]
    work: Path
    results: Path
    network: str
    seed: int
    stream: bool

    @classmethod
    def from_args(cls, parser: argparse.ArgumentParser, args: Any, here: Path) -> Setup:
        sizes = (
            [int(s) for s in args.sizes.split(",")]
            if args.sizes
            else ([5, 20] if args.quick else [5, 10, 20, 40])
        )
        work: Path = (args.work or here / "work").resolve()
        results = args.results or (work / "RESULTS-quick.md" if args.quick else here / "RESULTS.md")
        apps, modes = args.apps.split(","), args.modes.split(",")
        if unknown := [a for a in apps if a not in APPS]:
            parser.error(f"--apps: unknown {unknown}; choose from {sorted(APPS)}")
        if unknown := [m for m in modes if m not in MODES]:
            parser.error(f"--modes: unknown {unknown}; choose from {list(MODES)}")
        if not args.network.startswith("127.") or args.network.count(".") != 2:
            parser.error("--network must be three octets inside 127.0.0.0/8, e.g. 127.0.1")
        return cls(
            sizes=sizes,
            runs=args.runs or (1 if args.quick else 3),
            apps=[APPS[a] for a in apps],
            modes=modes,
            tools=args.tools.split(","),
            work=work,
            results=results.resolve(),
            network=args.network,
            seed=args.seed,
            stream=not args.no_stream,
        )


def prepare_apps(setup: Setup) -> dict[str, dict[str, Any]]:
    """Generate (or reuse) each app's release tree; its part of the run's record."""
    out: dict[str, dict[str, Any]] = {}
    for app in setup.apps:
        info = app.generate(setup.work / app.name / "ours" / "app", setup.work, setup.seed)
        print(f"{app.name} release: {info.files} files, {info.bytes / 1e6:.1f} MB", flush=True)
        out[app.name] = {
            "title": app.title,
            "sizes": setup.sizes,
            "runs": setup.runs,
            "tree": {
                "files": info.files,
                "bytes": info.bytes,
                "seed": setup.seed,
                "changed_file": app.changed_file,
            },
            "rows": [],
            "floor": {},
            "restart_floor": {},
            "rollout_floor": {},
        }
    return out


@dataclass
class Store:
    server: subprocess.Popen[bytes]
    endpoint: tuple[str, int]

    @property
    def url(self) -> str:
        return f"http://{self.endpoint[0]}:{self.endpoint[1]}"


def start_store(network: str) -> Store:
    """moto's S3 server on <network>.250 (standing in for a real store), with the bucket,
    counting the request bytes it reads (store_server.py); never counted in a tool's memory."""
    address = f"{network}.250"
    server = transfer._start_store(address, "benchmarks.store_server")  # counts what it reads
    NOT_MEASURED.add(server.pid)
    return Store(server, (address, transfer.STORE_PORT))


def stop_store(store: Store) -> None:
    store.server.terminate()
    store.server.wait(10)
    NOT_MEASURED.discard(store.server.pid)


@dataclass
class Plan:
    app: App
    projects: Projects
    tools: list[Any]


def tools_for(setup: Setup, fleet: Fleet, hosts: list[Host], store: Store | None) -> list[Plan]:
    """Per app: its projects for every tool, and the tools to run, ours in each mode first."""
    plans = []
    control = Path(f"/tmp/bench-cp-{os.getpid()}")
    for app in setup.apps:
        projects = write_projects(
            setup.work / app.name, hosts, setup.sizes, fleet.key_path, fleet.known_hosts_path
        )
        tools: list[Any] = []
        for name in setup.tools:
            if name == "ours":
                if "ssh" in setup.modes:
                    tools.append(Ours(projects))
                if store is not None:
                    deploy_yml = (projects.ours / "playbooks" / "deploy.yml").read_text()
                    (projects.ours / "playbooks" / "store.yml").write_text(
                        transfer._store_playbook(deploy_yml, store.url)
                    )
                    tools.append(OursStore(projects, transfer.KEYS))
            elif name == "ansible":
                tools.append(Ansible(projects, control))
            elif name == "ansible-sync":
                tools.append(AnsibleSync(projects, control))
            elif name == "pyinfra":
                tools.append(Pyinfra(projects))
            elif name == "pyinfra-sync":
                tools.append(PyinfraSync(projects))
            else:
                raise SystemExit(f"--tools: unknown tool {name!r}")
        plans.append(Plan(app, projects, tools))
    return plans
