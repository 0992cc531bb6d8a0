"""A small client of Prometheus' HTTP query API (GET /api/v1/query), and the numbers one group
of hosts served over a window, read with the playbook's queries. Standard library only
(urllib), every request with a timeout. Must never log or raise with a credential in it.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deployer.analysis.queries import render_query
from deployer.config.model import PrometheusSource
from deployer.errors import DeployerError
from deployer.secrets import Secret

__all__ = ["GroupNumbers", "MetricsError", "Prometheus"]


class MetricsError(DeployerError):
    """Prometheus did not answer, or answered a query with an error."""


@dataclass(frozen=True)
class GroupNumbers:
    """What one group of hosts served over the window, as Prometheus counted it."""

    hosts: tuple[str, ...]
    requests: float  # 0 when the query matched no series
    errors: float
    p50_seconds: float | None  # None: no request in the window (the quantile is NaN)
    p95_seconds: float | None


class Prometheus:
    def __init__(self, source: PrometheusSource, secrets: Mapping[str, Secret]) -> None:
        self.source = source
        self._headers = {"Accept": "application/json"}
        if source.bearer_token_secret:
            token = secrets[source.bearer_token_secret].reveal()
            self._headers["Authorization"] = f"Bearer {token}"
        elif source.basic_auth_user is not None:
            password = (
                secrets[source.basic_auth_password_secret].reveal()
                if source.basic_auth_password_secret
                else ""
            )
            pair = f"{source.basic_auth_user}:{password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def query(self, promql: str, at: float) -> float | None:
        """The single value of an instant query evaluated at `at` (epoch seconds); None when
        the result is empty; NaN (a quantile of no requests) also gives None."""
        params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        url = f"{self.source.url.rstrip('/')}/api/v1/query?{params}"
        request = urllib.request.Request(url, headers=self._headers)  # noqa: S310 (http(s) only, checked at load)
        try:
            with urllib.request.urlopen(request, timeout=self.source.timeout) as resp:  # noqa: S310
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise MetricsError(
                f"Prometheus at {self.source.url} answered HTTP {exc.code} to {promql}:"
                f" {_api_error(exc)}"
            ) from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MetricsError(
                f"Prometheus at {self.source.url} did not answer: {reason}",
                hint="check analysis.metrics.prometheus.url, and that Prometheus is up",
            ) from None
        if body.get("status") != "success":
            raise MetricsError(f"Prometheus refused {promql}: {body.get('error', body)}")
        return _single_value(body.get("data", {}), promql)

    def group(
        self,
        *,
        group: str,
        hosts: Sequence[str],
        window_seconds: float,
        at: float,
        release: str = "",
        previous: Sequence[str] = (),
    ) -> GroupNumbers:
        """Requests, errors and p50/p95 of `hosts` over `window_seconds` before `at`. `hosts`
        holds every name a host may carry in the instance label (inventory name, address)."""
        source = self.source

        def run(name: str, quantile: float | None = None) -> float | None:
            promql = render_query(
                source.queries[name],
                hosts=hosts,
                instance_label=source.instance_label,
                window_seconds=window_seconds,
                group=group,
                release=release,
                previous=previous,
                quantile=quantile,
            )
            return self.query(promql, at)

        return GroupNumbers(
            hosts=tuple(hosts),
            requests=run("requests") or 0.0,
            errors=run("errors") or 0.0,
            p50_seconds=run("latency", 0.5),
            p95_seconds=run("latency", 0.95),
        )


def _api_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return str(exc.reason)
    return str(body.get("error") or exc.reason)


def _single_value(data: Mapping[str, object], promql: str) -> float | None:
    kind, result = data.get("resultType"), data.get("result")
    values: list[Any]
    if kind == "scalar" and isinstance(result, list):
        values = [result]
    elif kind == "vector" and isinstance(result, list):
        values = [item.get("value") for item in result if isinstance(item, dict)]
    else:
        raise MetricsError(f"expected a vector or scalar from {promql}, got {kind}")
    if not values:
        return None
    if len(values) > 1:
        raise MetricsError(
            f"{promql} returned {len(values)} series; a query must return one number"
            " (wrap it in sum(...))"
        )
    try:
        number = float(values[0][1])
    except (TypeError, ValueError, IndexError):
        raise MetricsError(f"no number in the answer to {promql}: {values[0]!r}") from None
    return None if math.isnan(number) else number
