"""The playbook's metrics settings, read and validated: `metrics: {prometheus: ...}` and
`on_metrics_error` inside a canary's `analysis`, and the top-level `watch:` section. Query
templates are rendered once with example values here, so a typo fails at load."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from deployer.analysis.queries import PRESETS, QUERY_NAMES, QueryError, check_query
from deployer.config.model import (
    Analysis,
    MetricsErrorPolicy,
    Playbook,
    PrometheusSource,
    Watch,
)
from deployer.config.yamlfile import Node
from deployer.errors import ConfigError

__all__ = ["ANALYSIS_KEYS", "analysis_metrics", "check_metric_secrets", "watch"]

# The keys this module reads inside a canary's `analysis:` section.
ANALYSIS_KEYS = ("metrics", "synthetic", "on_metrics_error", "max_pause")
POLICIES = ("rollback", "pause", "ignore")
_EXAMPLE = "metrics: {prometheus: {url: http://prometheus:9090}}"


def analysis_metrics(fields: Mapping[str, Node]) -> dict[str, Any]:
    """Analysis fields from an `analysis:` mapping's entries (the other keys are ignored)."""
    out: dict[str, Any] = {}
    metrics = fields.get("metrics")
    if metrics is not None and not metrics.is_null:
        out["metrics"] = prometheus_source(metrics)
    synthetic = fields.get("synthetic")
    if synthetic is not None and not synthetic.is_null:
        out["synthetic"] = synthetic.boolean()
        if out["synthetic"] is False and "metrics" not in out:
            raise synthetic.error("synthetic: false leaves nothing to judge the canary with")
    out.update(_policy(fields))
    return out


def _policy(fields: Mapping[str, Node]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    policy = fields.get("on_metrics_error")
    if policy is not None and not policy.is_null:
        out["on_metrics_error"] = cast(MetricsErrorPolicy, policy.choice(POLICIES))
    pause = fields.get("max_pause")
    if pause is not None and not pause.is_null:
        out["max_pause"] = pause.number(minimum=1)
    return out


def prometheus_source(node: Node) -> PrometheusSource:
    """`metrics: {prometheus: {...}}`: the one source kind so far."""
    section = node.mapping(("prometheus",), required=("prometheus",), hint=_EXAMPLE)["prometheus"]
    keys = ("url", "preset", "instance_label", "timeout", "bearer_token_secret", "basic_auth")
    fields = section.mapping((*keys, "queries"), required=("url",), hint=_EXAMPLE)
    url = fields["url"].text()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fields["url"].error(
            f"expected an http(s) URL of the Prometheus server, got {url!r}",
            hint="e.g. http://prometheus.internal:9090 (the API path is added)",
        )
    preset = fields["preset"].choice(tuple(PRESETS)) if "preset" in fields else "prometheus_client"
    label = fields["instance_label"].text() if "instance_label" in fields else "instance"
    given = fields["queries"].mapping(QUERY_NAMES) if "queries" in fields else {}
    queries = {**PRESETS[preset], **{name: child.text() for name, child in given.items()}}
    for name, text in queries.items():
        try:
            check_query(text, label)
        except QueryError as exc:
            target = given.get(name) or fields.get("instance_label") or section
            raise target.error(f"query {name}: {exc}") from None
    user = password = None
    if "basic_auth" in fields:
        auth = fields["basic_auth"].mapping(("username", "password_secret"), ("username",))
        user = auth["username"].text()
        password = auth["password_secret"].text() if "password_secret" in auth else None
    token = fields.get("bearer_token_secret")
    if token is not None and user is not None:
        raise token.error("give either bearer_token_secret or basic_auth, not both")
    timeout = fields.get("timeout")
    return PrometheusSource(
        url=url,
        queries=queries,
        preset=preset,
        instance_label=label,
        bearer_token_secret=token.text() if token else None,
        basic_auth_user=user,
        basic_auth_password_secret=password,
        timeout=timeout.number(minimum=0.1) if timeout else 5.0,
        where=section.location(),
    )


def watch(node: Node, rules: Callable[[Node], Analysis]) -> Watch:
    """`watch: {metrics: ..., duration, interval, window, rules: {...}, on_metrics_error}`;
    `rules` reads the rule thresholds as a canary's `analysis:` would."""
    keys = ("metrics", "duration", "interval", "window", "rules", *ANALYSIS_KEYS[2:])
    fields = node.mapping(keys, required=("metrics",), hint=f"watch: {{duration: 300, {_EXAMPLE}}}")
    defaults = Watch(metrics=PrometheusSource(url="", queries={}))

    def seconds(key: str, default: float) -> float:
        child = fields.get(key)
        return default if child is None or child.is_null else child.number(positive=True)

    rule_node = fields.get("rules")
    return Watch(
        metrics=prometheus_source(fields["metrics"]),
        duration=seconds("duration", defaults.duration),
        interval=seconds("interval", defaults.interval),
        window=seconds("window", defaults.window),
        rules=rules(rule_node) if rule_node is not None and not rule_node.is_null else Analysis(),
        **_policy(fields),
    )


def check_metric_secrets(playbook: Playbook) -> None:
    """Every secret a metrics source names is declared under `secrets:`."""
    canary = playbook.strategy.canary
    sources = [
        canary.analysis.metrics if canary else None,
        playbook.watch.metrics if playbook.watch else None,
    ]
    for source in sources:
        if source is None:
            continue
        for key, name in (
            ("bearer_token_secret", source.bearer_token_secret),
            ("basic_auth.password_secret", source.basic_auth_password_secret),
        ):
            if name is not None and name not in playbook.secrets:
                where = source.where
                raise ConfigError(
                    f"{key}: no secret {name!r} under secrets:",
                    file=where.file if where else playbook.path,
                    line=where.line if where else None,
                    key_path=f"{where.key_path}.{key}" if where else key,
                    hint=f"declare it: secrets: {{{name}: {{env: PROMETHEUS_TOKEN}}}}",
                )
