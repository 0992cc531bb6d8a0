"""The playbook's `strategy:` section: kind (rolling, canary, blue_green), batches (`serial`),
failure budget, canary steps and their analysis rules, blue-green colors and load balancer,
drain. Validated here; planning from it is `deployer.plan` and `deployer.strategies`."""

from __future__ import annotations

import re
from typing import Literal, cast

from deployer.config.fields import checked_template, relative_path, section_fields
from deployer.config.metrics import ANALYSIS_KEYS, analysis_metrics
from deployer.config.model import Analysis, BlueGreen, Canary, Drain, LoadBalancer, Strategy
from deployer.config.yamlfile import Node

__all__ = ["parse_analysis", "parse_strategy"]

_PERCENT = re.compile(r"\s*(\d+)\s*%\s*")
_KINDS = ("rolling", "canary", "blue_green")


def parse_strategy(node: Node) -> Strategy:
    keys = ("kind", "serial", "max_fail_percentage", "pause", "rollback", "drain", *_KINDS[1:])
    fields = section_fields(node, keys)
    defaults = Strategy()
    kind = fields["kind"].choice(_KINDS) if "kind" in fields else "rolling"
    for other in _KINDS[1:]:
        if other in fields and other != kind:
            raise fields[other].error(
                f"'{other}' settings given but kind is '{kind}'",
                hint=f"set kind: {other}, or remove this section",
            )
    serial = fields.get("serial")
    failures, pause = fields.get("max_fail_percentage"), fields.get("pause")
    rollback = fields["rollback"].choice(("all", "batch")) if "rollback" in fields else "all"
    section = fields.get(kind)
    if kind == "blue_green" and section is None:
        raise fields["kind"].error(
            "kind blue_green needs a blue_green section naming the load balancer",
            hint=f"add strategy.blue_green.{_LB_EXAMPLE}",
        )
    drain = fields.get("drain")
    if drain is not None and kind == "blue_green":
        raise drain.error(
            "drain applies to kind rolling or canary: blue-green moves traffic in one step",
            hint="remove strategy.drain",
        )
    return Strategy(
        kind=cast(Literal["rolling", "canary", "blue_green"], kind),
        canary=(_canary(section) if section else Canary()) if kind == "canary" else None,
        blue_green=_blue_green(section) if kind == "blue_green" and section else None,
        serial=_serial(serial) if serial else defaults.serial,
        max_fail_percentage=(
            failures.number(minimum=0, maximum=100) if failures else defaults.max_fail_percentage
        ),
        pause=pause.number(minimum=0) if pause else defaults.pause,
        rollback=cast(Literal["all", "batch"], rollback),
        drain=_drain(drain) if drain else None,
    )


def _canary(node: Node) -> Canary:
    fields = section_fields(node, ("steps", "bake", "analysis"))
    defaults = Canary()
    steps, bake, analysis = fields.get("steps"), fields.get("bake"), fields.get("analysis")
    return Canary(
        steps=_serial(steps) if steps else defaults.steps,
        bake=bake.number(minimum=0) if bake else defaults.bake,
        analysis=parse_analysis(analysis) if analysis else Analysis(),
    )


def parse_analysis(node: Node) -> Analysis:
    keys = (
        "url",
        "via",
        "interval",
        "timeout",
        "min_samples",
        "max_error_rate",
        "max_error_rate_increase",
        "max_p50_ratio",
        "max_p95_ratio",
        "latency_floor_ms",
        *ANALYSIS_KEYS,
    )
    fields = node.mapping(keys)  # kept when empty: an empty rule means "do not check"
    defaults = Analysis()

    def rule(
        key: str, default: float | None, minimum: float, maximum: float | None = None
    ) -> float | None:
        if key not in fields:
            return default
        child = fields[key]
        return None if child.is_null else child.number(minimum=minimum, maximum=maximum)

    url = fields.get("url")
    via = fields.get("via")
    return Analysis(
        url=checked_template(url) if url and not url.is_null else None,
        via=(
            cast(Literal["ssh", "local"], via.choice(("ssh", "local")))
            if via and not via.is_null
            else None
        ),
        interval=rule("interval", defaults.interval, minimum=0.01) or defaults.interval,
        timeout=rule("timeout", defaults.timeout, minimum=0.01) or defaults.timeout,
        min_samples=(
            fields["min_samples"].integer(minimum=1)
            if "min_samples" in fields and not fields["min_samples"].is_null
            else defaults.min_samples
        ),
        max_error_rate=rule("max_error_rate", defaults.max_error_rate, minimum=0, maximum=100),
        max_error_rate_increase=rule(
            "max_error_rate_increase", defaults.max_error_rate_increase, minimum=0, maximum=100
        ),
        max_p50_ratio=rule("max_p50_ratio", defaults.max_p50_ratio, minimum=1),
        max_p95_ratio=rule("max_p95_ratio", defaults.max_p95_ratio, minimum=1),
        latency_floor_ms=rule("latency_floor_ms", defaults.latency_floor_ms, minimum=0) or 0.0,
        **analysis_metrics(fields),
    )


_GROUP = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LB_EXAMPLE = (
    "load_balancer: {hosts: lb, template: lb/upstream.conf.j2, dest: /etc/nginx/conf.d/app.conf,"
    ' validate: "nginx -t", reload: "nginx -s reload"}'
)


def _blue_green(node: Node) -> BlueGreen:
    fields = section_fields(node, ("colors", "load_balancer"), required=("load_balancer",))
    defaults = BlueGreen()
    colors = defaults.colors
    if "colors" in fields:
        items = fields["colors"].items()
        if len(items) != 2:
            raise fields["colors"].error(
                f"expected two inventory group names, got {len(items)}", hint="e.g. [blue, green]"
            )
        names = []
        for item in items:
            name = item.text()
            if not _GROUP.fullmatch(name):
                raise item.error(f"not a group name: {name!r}")
            names.append(name)
        if names[0] == names[1]:
            raise fields["colors"].error(f"the two colors must differ, got {names[0]!r} twice")
        colors = (names[0], names[1])
    return BlueGreen(colors=colors, load_balancer=_load_balancer(fields["load_balancer"], colors))


def _drain(node: Node) -> Drain:
    fields = section_fields(
        node, ("load_balancer", "timeout", "wait", "min_in_service"), required=("load_balancer",)
    )
    defaults = Drain()
    timeout, wait, floor = fields.get("timeout"), fields.get("wait"), fields.get("min_in_service")
    return Drain(
        load_balancer=_load_balancer(fields["load_balancer"], ()),
        timeout=timeout.number(minimum=0) if timeout else defaults.timeout,
        wait=cast(Literal["nginx", "timeout"], wait.choice(("nginx", "timeout")))
        if wait
        else defaults.wait,
        min_in_service=floor.integer(minimum=0) if floor else defaults.min_in_service,
    )


def _load_balancer(lb: Node, colors: tuple[str, ...]) -> LoadBalancer:
    if lb.is_null:
        raise lb.error("required", hint=_LB_EXAMPLE)
    lb_fields = section_fields(
        lb,
        ("hosts", "template", "dest", "validate", "reload", "verify_url"),
        required=("template", "dest", "reload"),
    )
    hosts = lb_fields["hosts"].text() if "hosts" in lb_fields else LoadBalancer().hosts
    if hosts in colors:
        raise lb_fields["hosts"].error(f"{hosts!r} is one of the colors; the load balancer is not")
    dest = checked_template(lb_fields["dest"])
    if not dest.text.startswith(("/", "{")):
        raise lb_fields["dest"].error(f"must be an absolute path, got {dest.text!r}")
    validate, verify = lb_fields.get("validate"), lb_fields.get("verify_url")
    return LoadBalancer(
        hosts=hosts,
        template=relative_path(lb_fields["template"]),
        dest=dest,
        validate=checked_template(validate) if validate else None,
        reload=checked_template(lb_fields["reload"]),
        verify_url=checked_template(verify) if verify else None,
        where=lb.location(),
    )


def _serial(node: Node) -> tuple[int | str, ...]:
    if isinstance(node.value, list):
        items = node.items()
        if not items:
            raise node.error("must list at least one batch size")
        return tuple(_batch_size(item) for item in items)
    return (_batch_size(node),)


def _batch_size(node: Node) -> int | str:
    """Ansible's serial: a host count (> 0) or a share of the hosts like "25%" (1-100)."""
    value = node.value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise node.error(f"must be greater than 0, got {value}")
        return value
    if isinstance(value, str) and (match := _PERCENT.fullmatch(value)):
        percent = int(match.group(1))
        if not 1 <= percent <= 100:
            raise node.error(f"percentage must be between 1% and 100%, got {value!r}")
        return f"{percent}%"
    raise node.expected('a count or a percentage like "25%"')
