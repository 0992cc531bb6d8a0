"""The Prometheus side of the analysis without Prometheus: the exact PromQL the default
queries render to, the sandbox around query templates, the playbook section's validation,
and the query client against a local HTTP server answering as Prometheus' API does."""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.analysis import step
from deployer.analysis.prometheus import MetricsError, Prometheus
from deployer.analysis.queries import PRESETS, QueryError, host_regex, render_query
from deployer.analysis.rules import as_group, judge_numbers
from deployer.config.model import Analysis, PrometheusSource
from deployer.config.playbook import parse_playbook
from deployer.errors import ConfigError
from deployer.events import CanaryGroup, CanaryRule, Event, EventBus, Notice, WatchChecked
from deployer.remote.recording import RecordingTransport
from deployer.reporters.terminal import TerminalReporter
from deployer.runner import Runner
from deployer.secrets import Secret

MINIMAL = "application: app\ndeploy_to: /srv/app\nsource: {path: .}\n"


def test_hosts_become_one_anchored_regex_of_names_and_addresses() -> None:
    assert host_regex(["web1", "127.0.0.21", "web1"]) == r"(web1|127\.0\.0\.21)(:[0-9]+)?"


def test_default_queries_render_to_this_promql() -> None:
    def render(preset: str, name: str) -> str:
        return render_query(
            PRESETS[preset][name],
            hosts=["web1", "127.0.0.21"],
            instance_label="instance",
            window_seconds=12.4,
            group="canary",
            quantile=0.95,
        )

    selector = r'instance=~"(web1|127\\.0\\.0\\.21)(:[0-9]+)?"'
    assert render("prometheus_client", "requests") == (
        f"sum(increase(http_requests_total{{ {selector} }}[12s]))"
    )
    assert render("prometheus_client", "errors") == (
        f'sum(increase(http_requests_total{{ {selector}, status=~"5.." }}[12s]))'
    )
    assert render("prometheus_client", "latency") == (
        "histogram_quantile(0.95, sum by (le)"
        f" (rate(http_request_duration_seconds_bucket{{ {selector} }}[12s])))"
    )
    assert render("opentelemetry", "errors") == (
        f"sum(increase(http_server_request_duration_seconds_count{{ {selector},"
        ' http_response_status_code=~"5.." }[12s]))'
    )


def test_a_query_template_runs_sandboxed_and_strict() -> None:
    kwargs = {"hosts": ["a"], "instance_label": "instance", "window_seconds": 5, "group": "x"}
    with pytest.raises(QueryError, match="'nope' is undefined"):
        render_query("up{ {{ nope }} }", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="not allowed"):
        render_query("{{ ''.__class__.__mro__ }}", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="not a Prometheus label name"):
        render_query("up", **{**kwargs, "instance_label": 'x"}'})  # type: ignore[arg-type]


def playbook_with(analysis: str) -> str:
    return MINIMAL + "strategy:\n  kind: canary\n  canary:\n    analysis:\n" + analysis


def test_the_metrics_section_is_read_with_defaults() -> None:
    book = parse_playbook(
        playbook_with("      metrics: {prometheus: {url: 'http://127.0.0.1:9090'}}\n"),
        "deploy.yml",
    )
    assert book.strategy.canary is not None
    analysis = book.strategy.canary.analysis
    assert analysis.metrics is not None
    assert analysis.metrics.queries == PRESETS["prometheus_client"]
    assert analysis.on_metrics_error == "rollback"
    assert analysis.probes is False  # the synthetic probe only when asked for with metrics
    assert Analysis().probes is True  # and always without


@pytest.mark.parametrize(
    ("analysis", "message"),
    [
        (
            "      metrics: {prometheus: {url: 'ftp://x'}}\n",
            "deploy.yml:8: strategy.canary.analysis.metrics.prometheus.url: expected an http(s)",
        ),
        (
            "      metrics: {prometheus: {url: 'http://p:9090',"
            " queries: {errors: 'x{ {{ oops }} }'}}}\n",
            "strategy.canary.analysis.metrics.prometheus.queries.errors: query errors: 'oops' is",
        ),
        (
            "      metrics: {prometheus: {url: 'http://p:9090', bearer_token_secret: tok}}\n",
            "bearer_token_secret: no secret 'tok' under secrets:",
        ),
        ("      on_metrics_error: promote\n", "expected one of: rollback, pause, ignore"),
        ("      synthetic: false\n", "synthetic: false leaves nothing to judge"),
    ],
)
def test_metrics_settings_errors_name_the_key(analysis: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_playbook(playbook_with(analysis), "deploy.yml")
    assert message in caught.value.message


def test_prometheus_numbers_are_judged_by_the_canary_rules() -> None:
    from deployer.analysis.prometheus import GroupNumbers

    canary = as_group(("web1",), GroupNumbers(("web1",), 120.4, 30.2, 0.004, 0.009))
    baseline = as_group(("web2",), GroupNumbers(("web2",), 360.0, 0.0, 0.004, 0.008))
    assert canary.samples == 120 and canary.errors == 30
    promote, reason, rules = judge_numbers(Analysis(min_samples=20), canary, baseline)
    assert not promote and reason == "failed: error rate vs baseline"
    few = as_group(("web1",), GroupNumbers(("web1",), 3.0, 0.0, None, None))
    promote, reason, _ = judge_numbers(Analysis(min_samples=20), few, baseline)
    assert not promote and "3 request(s), fewer than min_samples 20" in reason


# ---------------------------------------------------------------- the client


class FakeApi(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, dict[str, object]]] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        promql = query["query"][0]
        FakeApi.seen.append((promql, self.headers.get("Authorization")))
        status, body = FakeApi.answers.get(promql, (200, vector()))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def vector(*values: str) -> dict[str, object]:
    result = [{"metric": {}, "value": [1.0, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def api() -> Iterator[str]:
    FakeApi.answers, FakeApi.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def source(url: str, **more: object) -> PrometheusSource:
    return PrometheusSource(url=url, queries=PRESETS["prometheus_client"], **more)  # type: ignore[arg-type]


def test_the_client_sends_the_token_and_reads_one_number(api: str) -> None:
    FakeApi.answers["up"] = (200, vector("42"))
    client = Prometheus(source(api, bearer_token_secret="tok"), {"tok": Secret("s3cr3t-token")})
    assert client.query("up", at=1.0) == 42.0
    assert FakeApi.seen == [("up", "Bearer s3cr3t-token")]
    FakeApi.answers["nan"] = (200, vector("NaN"))
    assert client.query("nan", at=1.0) is None  # a quantile of no requests
    assert client.query("nothing", at=1.0) is None  # no series at all


def test_query_errors_are_metrics_errors_without_the_credential(api: str) -> None:
    FakeApi.answers["bad("] = (400, {"status": "error", "error": "parse error at char 5"})
    FakeApi.answers["two"] = (200, vector("1", "2"))
    client = Prometheus(source(api, bearer_token_secret="tok"), {"tok": Secret("s3cr3t-token")})
    with pytest.raises(MetricsError, match="HTTP 400 to bad\\(: parse error at char 5"):
        client.query("bad(", at=1.0)
    with pytest.raises(MetricsError, match="returned 2 series"):
        client.query("two", at=1.0)
    dead = Prometheus(source("http://127.0.0.1:9", timeout=1), {"tok": Secret("s3cr3t-token")})
    with pytest.raises(MetricsError, match="did not answer") as caught:
        dead.query("up", at=1.0)
    assert "s3cr3t" not in str(caught.value)


# ---------------------------------------------------------------- on_metrics_error


def policy_run(policy: str, answers: list[object]) -> tuple[object, list[Event]]:
    """query_with_policy on a measure that raises or returns `answers` in turn."""
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    runner = Runner(RecordingTransport(), bus)
    queue = list(answers)

    def measure() -> object:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    try:
        step.PAUSE_RETRY = 0.01
        return step.query_with_policy(runner, bus, policy, 5, measure, what="step 1/2"), events
    finally:
        step.PAUSE_RETRY = 2.0
        runner.close()


def test_rollback_is_the_verdict_when_prometheus_fails() -> None:
    down = MetricsError("Prometheus at http://p did not answer: refused")
    outcome, events = policy_run("rollback", [down])
    assert outcome == (
        "metrics unavailable (on_metrics_error: rollback): Prometheus at http://p did not"
        " answer: refused"
    )
    assert [(e.level, e.text) for e in events if isinstance(e, Notice)] == [
        ("error", "step 1/2: Prometheus at http://p did not answer: refused")
    ]


def test_ignore_never_promotes_silently() -> None:
    outcome, events = policy_run("ignore", [MetricsError("down")])
    assert outcome == "not judged: metrics unavailable (on_metrics_error: ignore): down"
    (notice,) = [e for e in events if isinstance(e, Notice)]
    assert notice.level == "warning" and "NOT judged on real traffic" in notice.text


def test_pause_waits_for_prometheus_then_judges() -> None:
    outcome, events = policy_run("pause", [MetricsError("down"), MetricsError("down"), 42])
    assert outcome == 42
    texts = [e.text for e in events if isinstance(e, Notice)]
    assert "on_metrics_error: pause: waiting up to 5s" in texts[0]
    assert texts[-1] == "step 1/2: Prometheus answers again; judging"


def test_a_watch_look_is_one_line_and_its_last_one_a_table() -> None:
    fleet = CanaryGroup(("web1", "web2"), 352, 92, 26.1, 4.0, 9.2)
    before = CanaryGroup(("web1", "web2"), 121, 0, 0.0, 4.0, 8.0)
    rule = CanaryRule("error rate vs baseline", "26.1%", "0.0%", "<= baseline + 1 pt (1.0%)", False)
    look = WatchChecked(
        elapsed=21.2,
        duration=45,
        window=6,
        fleet=fleet,
        baseline=before,
        rules=[rule],
        verdict="failed",
        reason="failed: error rate vs baseline",
        final=True,
    )
    assert TerminalReporter(io.StringIO()).lines(look) == [
        "watch 21s/45s (last 6s): 352 requests, errors 26.1%, p95 9 ms: failed",
        "                          fleet  before",
        "  hosts                       2       2",
        "  requests                  352     121",
        "  error rate vs baseline  26.1%    0.0%  FAIL  <= baseline + 1 pt (1.0%)",
        "  -> roll back: failed: error rate vs baseline",
    ]
