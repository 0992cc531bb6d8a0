"""Typed, frozen configuration objects. Built and validated once by the loaders; never mutated.

String values that may contain Jinja2 are kept as `Template` (text + where it came from) and
rendered per host at plan time, so an undefined variable is reported with file, line and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Location:
    """Where a value came from, for error messages: `file:line: key.path`."""

    file: str
    line: int | None
    key_path: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key_path}" if self.key_path else where


@dataclass(frozen=True)
class Template:
    """A Jinja2 template string from a config file. Render with `deployer.config.render`."""

    text: str
    where: Location


# ---------------------------------------------------------------- inventory


@dataclass(frozen=True)
class Host:
    """One host of an inventory, with its variables merged by precedence
    (all < parent group < child group < host)."""

    name: str  # inventory name (e.g. web1)
    address: str  # ansible_host / host, defaults to name
    port: int | None  # ansible_port / port; None: ~/.ssh/config's Port, else 22
    user: str | None  # ansible_user / user
    groups: tuple[str, ...]  # every group it belongs to, ancestors included, 'all' first
    vars: Mapping[str, Any] = field(default_factory=dict)  # merged variables
    where: Location | None = None  # where the host was declared

    @property
    def key_file(self) -> str | None:
        value = self.vars.get("ansible_ssh_private_key_file") or self.vars.get("ssh_key_file")
        return str(value) if value else None

    @property
    def known_hosts_file(self) -> str | None:
        value = self.vars.get("ssh_known_hosts_file")
        return str(value) if value else None


@dataclass(frozen=True)
class Inventory:
    env: str
    path: str
    hosts: tuple[Host, ...]  # in file order
    groups: Mapping[str, tuple[str, ...]]  # group name -> host names (ancestors resolved)
    # As written, for `inventory --list`: group -> its direct child groups / direct hosts.
    children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------- playbook


@dataclass(frozen=True)
class Source:
    """Where the release comes from: a local directory, or a git ref (`git archive`)."""

    path: str | None = None  # local directory, relative to the project root
    git_repo: str | None = None  # repository path, relative to the project root
    ref: str | None = None  # default ref when --ref is not given
    subdir: str | None = None  # only this subdirectory of the repository
    # Python bytecode (`__pycache__/`, `*.pyc`) is left out of releases unless this is set:
    # set it when the source ships bytecode compiled for the hosts (vendored dependencies).
    keep_bytecode: bool = False


@dataclass(frozen=True)
class Shared:
    dirs: tuple[str, ...] = ()  # relative to shared/, linked into each release
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class TemplateFile:
    src: str  # path under templates/
    dest: str  # path relative to the release directory, or to shared/ when `shared`
    mode: int = 0o644
    where: Location | None = None
    # Written to <deploy_to>/shared/<dest> (replaced whole, never edited in place) and linked
    # into each release at <dest>, like shared.files: where an app's env file with secrets goes.
    shared: bool = False


@dataclass(frozen=True)
class SecretSource:
    """Where one secret's value comes from on this machine (never the value: that is a
    `deployer.secrets.Secret`, resolved at plan time). Exactly one of `env` and `command`."""

    name: str  # as templates use it: {{ secrets.NAME }}
    env: str | None = None  # an environment variable of the deploying process
    command: str | None = None  # run with bash in the project root; stdout is the value
    where: Location | None = None


@dataclass(frozen=True)
class Migrate:
    command: Template
    run_on: str | None = None  # host name or group name; first host of it. None: first selected


@dataclass(frozen=True)
class HttpCheck:
    url: Template  # e.g. http://{{ ansible_host }}:8000/health
    via: Literal["ssh", "local"] = "ssh"  # through the host's SSH connection, or from here
    expect_status: int = 200
    expect_version: bool = False  # JSON body's "version" must equal the new release id


@dataclass(frozen=True)
class Health:
    http: HttpCheck | None = None
    command: Template | None = None  # remote command; exit 0 means healthy
    timeout: float = 2.0  # seconds per probe
    successes: int = 1  # consecutive successes required
    interval: float = 0.5  # first backoff between probes (grows to 4x)
    deadline: float = 30.0  # overall seconds per host


@dataclass(frozen=True)
class PrometheusSource:
    """A Prometheus server the analysis asks for the app's real traffic numbers (see
    deployer/analysis/). `queries` are PromQL templates (requests, errors, latency), already
    checked for syntax and variables by the loader."""

    url: str  # e.g. http://prometheus.internal:9090 (no trailing /api/v1)
    queries: Mapping[str, str]  # requests | errors | latency -> PromQL template text
    preset: str = "prometheus_client"  # which defaults filled the queries not given
    instance_label: str = "instance"  # the label that names the host of each series
    bearer_token_secret: str | None = None  # a playbook secret's name
    basic_auth_user: str | None = None
    basic_auth_password_secret: str | None = None  # a playbook secret's name
    timeout: float = 5.0  # seconds per query
    where: Location | None = None


MetricsErrorPolicy = Literal["rollback", "pause", "ignore"]


@dataclass(frozen=True)
class Analysis:
    """How a canary is judged during its bake: both groups (canary hosts on the new release,
    baseline hosts still on the old one) are sampled at `interval`, and the rules below compare
    them. A rule set to None is not checked."""

    url: Template | None = None  # default: health.http.url (rendered per host)
    via: Literal["ssh", "local"] | None = None  # default: health.http.via
    interval: float = 0.5  # seconds between sampling rounds
    timeout: float = 2.0  # per request; a timeout counts as an error
    min_samples: int = 10  # per group; fewer means "inconclusive", which does not promote
    max_error_rate: float | None = None  # absolute, in percent; checked even without a baseline
    max_error_rate_increase: float | None = 1.0  # percentage points over the baseline
    max_p50_ratio: float | None = None  # canary p50 <= ratio x baseline p50
    max_p95_ratio: float | None = 1.5  # canary p95 <= ratio x baseline p95
    # Latencies below this are treated as this in ratio rules, so a 1 ms vs 2 ms difference
    # (noise on a loopback or LAN) never fails a canary.
    latency_floor_ms: float = 20.0
    # Real traffic from Prometheus, judged by the same rules; with it, the synthetic probe
    # runs only when `synthetic: true` (None: on exactly when no metrics source is set).
    metrics: PrometheusSource | None = None
    synthetic: bool | None = None
    # Prometheus unreachable or a query failing: roll back, wait for it (up to max_pause
    # seconds, then roll back), or judge without it (never a silent promotion: a warning).
    on_metrics_error: MetricsErrorPolicy = "rollback"
    max_pause: float = 300.0

    @property
    def probes(self) -> bool:
        """Whether the synthetic probe samples the hosts."""
        return self.synthetic if self.synthetic is not None else self.metrics is None


@dataclass(frozen=True)
class Canary:
    # Cumulative share of the hosts on the new release after each step (counts or "N%");
    # a last step of "100%" is implied. The hosts a step adds switch as one health-checked batch.
    steps: tuple[int | str, ...] = (1,)
    bake: float = 60.0  # seconds of analysis after every step but the last
    analysis: Analysis = Analysis()


@dataclass(frozen=True)
class LoadBalancer:
    """Blue-green: where traffic is switched. `template` (under templates/) is rendered with
    the live color's hosts and written to `dest` on every load balancer host; `validate`
    checks it in place (the previous file is restored when it fails), `reload` applies it.
    The loader requires `template`, `dest` and `reload`; the defaults only let code build an
    empty BlueGreen()."""

    hosts: str = "lb"  # inventory host or group name
    template: str = ""  # path under templates/
    dest: Template | None = None  # absolute path on the load balancer host
    validate: Template | None = None  # e.g. nginx -t ...; exit 0 means the config is good
    reload: Template | None = None  # e.g. nginx -s reload ...
    # The load balancer's own address (e.g. http://{{ ansible_host }}:8080/health): after a
    # reload, asked through its host's SSH connection until the new color's release answers,
    # `health.successes` times in a row, so "switched" means serving, not "signal sent".
    verify_url: Template | None = None
    where: Location | None = None  # of the load_balancer section, for errors


@dataclass(frozen=True)
class BlueGreen:
    colors: tuple[str, str] = ("blue", "green")  # inventory group names
    load_balancer: LoadBalancer = LoadBalancer()


@dataclass(frozen=True)
class Drain:
    """Rolling and canary: each batch leaves the load balancer(s) before it restarts and
    comes back once healthy (deployer/strategies/drain.py). `load_balancer` takes the same
    keys as blue-green's; its template marks a host down when `h.down` is true."""

    load_balancer: LoadBalancer = LoadBalancer()
    timeout: float = 30.0  # most seconds to wait for a drained batch's in-flight requests
    # How to know the batch is drained: "nginx" waits until the nginx workers that ran
    # before the reload (they hold the in-flight requests) have exited, at most `timeout`;
    # "timeout" always waits the full `timeout`.
    wait: Literal["nginx", "timeout"] = "timeout"
    min_in_service: int = 1  # a batch is not drained when fewer would stay in service


@dataclass(frozen=True)
class Strategy:
    kind: Literal["rolling", "canary", "blue_green"] = "rolling"
    canary: Canary | None = None  # set when kind is canary
    blue_green: BlueGreen | None = None  # set when kind is blue_green
    drain: Drain | None = None  # rolling and canary: drain batches from load balancers
    serial: tuple[int | str, ...] = ("100%",)  # Ansible `serial`: counts and "N%" strings
    max_fail_percentage: float = 0.0  # abort when a batch's failed share exceeds this
    pause: float = 0.0  # seconds between batches
    rollback: Literal["all", "batch"] = (
        "all"  # on failure revert every switched batch, or only the failing one
    )


@dataclass(frozen=True)
class Hook:
    run: Template
    where: Literal["local", "remote"] = "remote"


@dataclass(frozen=True)
class Connection:
    parallel: int = 20  # hosts worked on at once
    connect_timeout: float = 10.0
    command_timeout: float = 600.0


@dataclass(frozen=True)
class Notify:
    """Where run notifications go. The webhook URL is a secret (Slack's are): the playbook
    names the environment variable that holds it, never the URL."""

    webhook_url_env: str | None = None
    timeout: float = 5.0
    where: Location | None = None


@dataclass(frozen=True)
class Preflight:
    """How the pre-deployment checklist judges. `strict`: its warnings (source not clean and
    pushed, no notifications) block a deploy too, as `--strict` does; the two are ORed."""

    strict: bool = False
    where: Location | None = None  # where `strict` was set, to say why a warning blocked


@dataclass(frozen=True)
class ArtifactStore:
    """`artifacts:` where hosts fetch the release archive from, instead of receiving it over
    SSH. `store: ssh` (the default) pushes it through each host's session; `store: s3` uploads
    it once to S3-compatible storage and each host downloads it through a presigned URL valid
    `url_ttl` seconds. Credentials come from this machine's environment (boto3's usual chain,
    or the variables named here) and never reach a host. See `deployer.artifacts`."""

    store: Literal["ssh", "s3"] = "ssh"
    bucket: str = ""
    prefix: str = ""  # key prefix inside the bucket, e.g. "deploys/"
    endpoint_url: str | None = None  # None: AWS S3; MinIO, R2, Ceph RGW: their URL
    region: str | None = None  # "auto" for Cloudflare R2
    addressing: Literal["auto", "path", "virtual"] = "auto"
    url_ttl: float = 300.0  # seconds a presigned URL is valid; shared until half is gone
    profile: str | None = None  # an AWS config profile on this machine
    access_key_id_env: str | None = None  # env variables holding the keys (else boto3's chain)
    secret_access_key_env: str | None = None
    session_token_env: str | None = None
    fetch_with: Literal["auto", "curl", "python3"] = "auto"  # the host's download tool
    where: Location | None = None


HOOK_POINTS = (
    "before_build",
    "after_build",
    "before_stage",
    "after_stage",
    "before_migrate",
    "after_migrate",
    "before_switch",
    "after_switch",
    "before_rollback",
    "after_rollback",
    "on_failure",
)


@dataclass(frozen=True)
class ResourceLimits:
    """Above these a host is warned about in the checklist (None: not checked)."""

    # 1-minute load average / CPU count. Not checked unless set: a shared CI or build host
    # often runs above 1 per CPU for minutes without anything being wrong with a deploy.
    max_load_per_cpu: float | None = None
    min_memory_available_percent: float | None = 5.0
    min_disk_free_percent: float | None = 10.0  # of the filesystem under deploy_to
    min_inodes_free_percent: float | None = 10.0


@dataclass(frozen=True)
class Resources:
    """`resources:` in the playbook: where `status` finds the app's processes (a pidfile,
    relative to deploy_to unless absolute, or a systemd unit), and the checklist's limits."""

    pidfile: str | None = None
    systemd_unit: str | None = None
    warn: ResourceLimits = ResourceLimits()


@dataclass(frozen=True)
class Watch:
    """After the last batch is healthy, keep the lock and watch the whole fleet's real traffic
    for `duration` seconds, every `interval`, over the last `window` seconds; the baseline is
    the fleet's own numbers over `duration` before the first switch. A failing rule rolls the
    fleet back. `rules` carries the thresholds (url/via/interval/timeout are unused)."""

    metrics: PrometheusSource
    duration: float = 300.0
    interval: float = 10.0
    window: float = 60.0
    rules: Analysis = Analysis()
    on_metrics_error: MetricsErrorPolicy = "rollback"
    max_pause: float = 300.0


@dataclass(frozen=True)
class Playbook:
    path: str
    application: str
    deploy_to: Template
    source: Source
    keep_releases: int = 5
    shared: Shared = Shared()
    templates: tuple[TemplateFile, ...] = ()
    migrate: Migrate | None = None
    restart: Template | None = None
    health: Health = Health()
    strategy: Strategy = Strategy()
    hooks: Mapping[str, tuple[Hook, ...]] = field(default_factory=dict)  # keys from HOOK_POINTS
    connection: Connection = Connection()
    vars: Mapping[str, Any] = field(default_factory=dict)  # defaults below inventory vars
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)  # name -> source
    notify: Notify = Notify()
    preflight: Preflight = Preflight()
    watch: Watch | None = None
    resources: Resources = Resources()
    # `cleanup: {sudo: true}`: prune with `sudo -n rm` what the deploy user cannot delete
    cleanup_sudo: bool = False
    artifacts: ArtifactStore = ArtifactStore()
