"""Real Prometheus (Debian's `prometheus` package, installed by scripts/setup) for the
metrics-analysis tests: run on this machine on an unused loopback address of the worker's
block, scraping every sandbox host's app each second, with its data in a temporary directory
so it can be stopped and started again mid-test. And a client that spreads requests over
several of the sample app's pages."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.integration.client import Client

PORT = 9090
PAGES = ("/", "/api/items", "/api/cart")  # /health is the health check's, not the traffic's

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: sample-app
    static_configs:
      - targets: [{targets}]
"""


class Prometheus:
    def __init__(self, address: str, targets: list[str], root: Path) -> None:
        assert address.startswith("127."), "loopback only"
        self.address = address
        self.url = f"http://{address}:{PORT}"
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (root / "prometheus.yml").write_text(
            CONFIG.format(targets=", ".join(f"'{t}'" for t in targets))
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: run scripts/setup"
        log = (self.root / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address={self.address}:{PORT}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, "prometheus not ready in 30 s\n" + self.log()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def query(self, promql: str) -> list[dict[str, object]]:
        params = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=5) as resp:
            result: list[dict[str, object]] = json.loads(resp.read())["data"]["result"]
            return result

    def wait_scraped(self, instances: list[str], timeout: float = 30.0) -> None:
        """Until every instance's last scrape succeeded (its app answers /metrics)."""
        deadline = time.monotonic() + timeout
        while True:
            up = {
                str(r["metric"]["instance"])  # type: ignore[index]
                for r in self.query('up{job="sample-app"} == 1')
            }
            if set(instances) <= up:
                return
            assert time.monotonic() < deadline, f"not scraped: {set(instances) - up}"
            time.sleep(0.3)


class PagesClient(Client):
    """The zero-downtime tests' bounded client, going round several pages."""

    def __init__(self, base: str, pages: tuple[str, ...] = PAGES, **kwargs: object) -> None:
        super().__init__(base + pages[0], **kwargs)  # type: ignore[arg-type]
        self.pages = pages
        self._next = 0

    def _one(self):  # type: ignore[no-untyped-def]
        self.path = self.pages[self._next % len(self.pages)]
        self._next += 1
        return super()._one()
