"""PromQL for the analysis: the default queries for two common exporters' metric names, and
rendering a query template for one group of hosts. Pure: no I/O, no config objects.

Templates render in Jinja2's immutable sandbox (a playbook's query can read the variables
below and nothing else of the deployer), with undefined variables an error. Variables:

    selector        the hosts as a label matcher: instance=~"(web1|web2)(:[0-9]+)?"
    hosts           the regex alone, escaped for a double-quoted PromQL string
    instance_label  the label that names a series' host (default `instance`)
    window          the range to judge, e.g. 15s
    quantile        0.5 or 0.95 (the latency query only)
    release         the release being deployed; previous: the release(s) it replaces
    group           canary | baseline | fleet
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["PRESETS", "QUERY_NAMES", "QueryError", "check_query", "host_regex", "render_query"]

QUERY_NAMES = ("requests", "errors", "latency")

# requests and errors: counts over the window; latency: seconds, at `quantile`.
PRESETS: Mapping[str, Mapping[str, str]] = {
    # prometheus_client (Python) as commonly instrumented, and the Go client's promhttp
    # examples: a counter http_requests_total with a `status` label, and a histogram
    # http_request_duration_seconds.
    "prometheus_client": {
        "requests": "sum(increase(http_requests_total{ {{ selector }} }[{{ window }}]))",
        "errors": (
            'sum(increase(http_requests_total{ {{ selector }}, status=~"5.." }[{{ window }}]))'
        ),
        "latency": (
            "histogram_quantile({{ quantile }}, sum by (le)"
            " (rate(http_request_duration_seconds_bucket{ {{ selector }} }[{{ window }}])))"
        ),
    },
    # OpenTelemetry's HTTP server semantic conventions, as its Prometheus exporter (and the
    # collector's prometheus exporter) names them: one histogram, the status as a label.
    "opentelemetry": {
        "requests": (
            "sum(increase(http_server_request_duration_seconds_count{ {{ selector }} }"
            "[{{ window }}]))"
        ),
        "errors": (
            "sum(increase(http_server_request_duration_seconds_count{ {{ selector }},"
            ' http_response_status_code=~"5.." }[{{ window }}]))'
        ),
        "latency": (
            "histogram_quantile({{ quantile }}, sum by (le)"
            " (rate(http_server_request_duration_seconds_bucket{ {{ selector }} }"
            "[{{ window }}])))"
        ),
    },
}

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class QueryError(ValueError):
    """A query template that does not parse or render; the message says why."""


def host_regex(names: Sequence[str]) -> str:
    """One RE2 regex matching an `instance` value of any of these hosts (inventory name or
    address), with or without a `:port`: Prometheus anchors it at both ends."""
    alternatives = "|".join(re.escape(name) for name in dict.fromkeys(names))
    return f"({alternatives})(:[0-9]+)?"


def _promql_string(text: str) -> str:
    """`text` made safe inside a double-quoted PromQL string (Go escaping rules)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_query(
    template: str,
    *,
    hosts: Sequence[str],
    instance_label: str,
    window_seconds: float,
    group: str,
    release: str = "",
    previous: Sequence[str] = (),
    quantile: float | None = None,
) -> str:
    if not _LABEL.fullmatch(instance_label):
        raise QueryError(f"not a Prometheus label name: {instance_label!r}")
    regex = _promql_string(host_regex(hosts))
    variables = {
        "selector": f'{instance_label}=~"{regex}"',
        "hosts": regex,
        "instance_label": instance_label,
        "window": f"{max(1, round(window_seconds))}s",
        "group": group,
        "release": release,
        "previous": list(previous),
        "quantile": "" if quantile is None else f"{quantile:g}",
    }
    try:
        return _ENV.from_string(template).render(variables).strip()
    except jinja2.TemplateSyntaxError as exc:
        raise QueryError(f"template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise QueryError(f"{exc.message}; the variables are: {', '.join(variables)}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise QueryError(f"not allowed in a query template: {exc}") from None


def check_query(template: str, instance_label: str = "instance") -> None:
    """Render once with example values, so a bad template fails at load, not mid-bake."""
    render_query(
        template,
        hosts=["web1", "127.0.0.1"],
        instance_label=instance_label,
        window_seconds=60,
        group="canary",
        release="20260101T000000Z-abcdef0",
        previous=["20251231T000000Z-abcdef0"],
        quantile=0.95,
    )
