"""Real nginx as the load balancer of a sandbox fleet: run by the deploy user (the user the
deployer logs in as) from a directory it owns, so a blue-green deploy can validate and reload
it with no root and no sudo. It listens on its host's own loopback address.

The settings a zero-downtime switch relies on (see docs/configuration.md, "Blue-green"):
- passive health checks: `max_fails=1 fail_timeout=1s` per upstream server in the blue-green
  upstream file (templates/lb/upstream.conf.j2): a server that failed is skipped for 1 s.
  Not for the rolling scenarios' upstream (`start(backends)`): there `max_fails=0`, because
  a rolling rollback restarts a host every ~0.3 s and nginx cannot mark a server down for
  less than a second (fail_timeout counts whole seconds), so all four were once marked down
  together ("no live upstreams", 12 requests answered 502); retries alone cover a restart;
- retries: `proxy_next_upstream error timeout http_502 http_503` with a bounded number of
  tries and time, so a request that meets a restarting app is sent to the next server
  (nginx retries only idempotent requests, such as these GETs);
- no keep-alive, to clients or to upstreams: each request is its own connection, so no
  request is sent down a pooled connection to a process that has since exited, and a reload
  leaves no client parked on an old worker;
- reload drains: `nginx -s reload` starts new workers with the new config; the old ones stop
  accepting and finish their in-flight requests (bounded by worker_shutdown_timeout).

The access log records `$upstream_addr` and `$upstream_status` for every request: a request
nginx had to retry on another server lists several (`a, b`); `retried()` counts them, so a
test measures what retries hid instead of only what the client saw.
"""

from __future__ import annotations

import shlex
import time
import urllib.request
from dataclasses import dataclass

from deployer.sandbox import Fleet

LB_ROOT = "/srv/lb"
LB_PORT = 8080
UPSTREAM = f"{LB_ROOT}/upstream.conf"
_FLAGS = f"-p {LB_ROOT} -e {LB_ROOT}/error.log -c {LB_ROOT}/nginx.conf"
NGINX = "/usr/sbin/nginx"  # not on the PATH of a non-login SSH session
VALIDATE = f"{NGINX} -t -q {_FLAGS}"
RELOAD = f"{NGINX} -s reload {_FLAGS}"

NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log notice;
# After a reload, old workers finish their in-flight requests, for at most this long.
worker_shutdown_timeout 30s;
events {{ worker_connections 512; }}
http {{
    log_format timed '$msec $status $upstream_addr $upstream_status "$request"';
    access_log {root}/access.log timed;
    # Run as an unprivileged user: every temporary path inside the directory it owns.
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {upstream};
    server {{
        listen {address}:{port};
        keepalive_timeout 0;
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.0;
            proxy_set_header Connection close;
            proxy_connect_timeout 1s;
            proxy_read_timeout 10s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 4;
            proxy_next_upstream_timeout 10s;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Logged:
    """One access log line: when, the status, the method, and every upstream server tried."""

    at: float
    status: int
    method: str
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]

    @property
    def retried(self) -> bool:
        return len(self.upstreams) > 1


def parse_access_log(text: str) -> list[Logged]:
    """Lines of the `timed` log_format: `$msec $status $upstream_addr $upstream_status
    "$request"`; nginx separates the servers of one request with ", " (" : " across an
    internal redirect)."""
    out = []
    for line in text.splitlines():
        head, _, request = line.partition(' "')
        if not request:
            continue
        at, status, rest = head.split(" ", 2)
        # $upstream_addr and $upstream_status hold the same number of comma-separated items.
        items = [i.strip() for i in rest.replace(" : ", ", ").split(", ")]
        flat = " ".join(items).split()
        half = len(flat) // 2
        out.append(
            Logged(
                at=float(at),
                status=int(status),
                method=request.split(" ", 1)[0],
                upstreams=tuple(flat[:half]),
                upstream_statuses=tuple(flat[half:]),
            )
        )
    return out


class Nginx:
    """nginx on one fleet host, proxying to an upstream named `name` defined in UPSTREAM."""

    def __init__(self, fleet: Fleet, host: str, *, name: str = "sample-app") -> None:
        self.fleet = fleet
        self.host = host
        self.name = name
        self.address = fleet.host(host).address
        self.port = LB_PORT

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def _sh(self, command: str) -> str:
        code, out = self.fleet.exec(self.host, command, user="deploy")
        assert code == 0, f"{self.host}: {command}: {out}"
        return out

    def _write(self, path: str, text: str) -> None:
        self._sh(f"cat > {shlex.quote(path)} <<'EOF'\n{text}EOF")

    def start(self, backends: list[str] | None = None) -> None:
        """Start nginx; `backends` (host names) fill the upstream, else a placeholder that
        answers 502 until a blue-green deploy writes the real one."""
        self.fleet.exec(self.host, f"install -d -o deploy -g deploy {LB_ROOT} {LB_ROOT}/tmp")
        conf = NGINX_CONF.format(
            root=LB_ROOT, upstream=UPSTREAM, address=self.address, port=self.port, name=self.name
        )
        self._write(f"{LB_ROOT}/nginx.conf", conf)
        self._write(UPSTREAM, self._upstream(backends))
        self._sh(f"{NGINX} {_FLAGS}")
        self.wait_listening()

    def _upstream(self, backends: list[str] | None) -> str:
        if not backends:
            # nginx needs one server; this one is marked down, so it is never contacted.
            return f"upstream {self.name} {{ server {self.address}:9 down; }}\n"
        servers = "".join(
            f"    server {self.fleet.host(h).address}:8000 max_fails=0;\n" for h in backends
        )
        return f"upstream {self.name} {{\n{servers}}}\n"

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # nginx answered (a 502 from the placeholder upstream is fine)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def upstream(self) -> str:
        return self._sh(f"cat {UPSTREAM}")

    def error_log(self) -> str:
        return self._sh(f"cat {LB_ROOT}/error.log || true")

    def access_log(self) -> list[Logged]:
        return parse_access_log(self._sh(f"cat {LB_ROOT}/access.log || true"))

    def retried(self, since: float = 0.0) -> list[Logged]:
        """Requests nginx sent to more than one upstream server (a retry hid a failure)."""
        return [r for r in self.access_log() if r.at >= since and r.retried]

    def drain_settings(self, **changes: object) -> dict[str, object]:
        """The playbook's strategy.drain for this nginx (templates/lb/drain.conf.j2)."""
        return {
            "load_balancer": {**self.load_balancer_settings(), "template": "lb/drain.conf.j2"},
            "wait": "nginx",
            "timeout": 20,
            **changes,
        }

    def load_balancer_settings(self) -> dict[str, object]:
        """The playbook's strategy.blue_green.load_balancer for this nginx."""
        return {
            "hosts": "lb",
            "template": "lb/upstream.conf.j2",
            "dest": UPSTREAM,
            "validate": VALIDATE,
            "reload": RELOAD,
            "verify_url": f"http://{{{{ ansible_host }}}}:{LB_PORT}/health",
        }
