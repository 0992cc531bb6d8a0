"""Drain without hosts: the playbook section, the drain plan (load balancers set aside, app
batches cut again, which hosts leave in which batch under the capacity floor, configs with
hosts marked down), the dry run's part, and the exact text of the drain script."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.config import parse_playbook
from deployer.errors import ConfigError
from deployer.remote import drain as drain_scripts
from deployer.strategies.drain import (
    BatchDrain,
    DrainPlan,
    describe_drain,
    keeps_floor,
    plan_batches,
    plan_drain,
)
from tests.unit.planning import RELEASE, load_balancer, plan_for, write_lb_template

INVENTORY = """
all:
  vars: {app_port: 8000}
  children:
    web:
      hosts:
        w1: {ansible_host: 127.0.0.2}
        w2: {ansible_host: 127.0.0.3}
        w3: {ansible_host: 127.0.0.4}
        w4: {ansible_host: 127.0.0.5}
    lb: {hosts: {lb1: {ansible_host: 127.0.0.6}}}
"""

PLAYBOOK = """
application: app
deploy_to: /srv/app
source: {path: src}
migrate: {command: ./migrate}
vars: {app_listen: "{{ ansible_host }}"}
health:
  http: {url: "http://{{ ansible_host }}:8000/health"}
strategy:
  kind: rolling
  serial: SERIAL
  drain:
    timeout: 12
    wait: nginx
    min_in_service: FLOOR
""" + load_balancer("drain.conf.j2")

TEMPLATE = """\
upstream {{ application }} {
{% for h in hosts %}    server {{ h.vars.app_listen }}:{{ h.vars.app_port }}\
{% if h.down %} down{% endif %};  # {{ h.name }}
{% endfor %}}
"""


def drain_for(
    tmp_path: Path,
    *,
    serial: str = "[1]",
    floor: int = 1,
    template: str = TEMPLATE,
    limit: set[str] | None = None,
) -> tuple[object, DrainPlan]:
    write_lb_template(tmp_path, "drain.conf.j2", template)
    book = PLAYBOOK.replace("SERIAL", serial).replace("FLOOR", str(floor))
    plan, inv = plan_for(INVENTORY, book, tmp_path, RELEASE, limit=limit)
    found = plan_drain(plan, inv, tmp_path)
    assert found is not None
    return found


def test_the_section_is_read_with_its_defaults() -> None:
    book = parse_playbook(PLAYBOOK.replace("SERIAL", "1").replace("FLOOR", "2"), "deploy.yml")
    drain = book.strategy.drain
    assert drain is not None
    assert (drain.timeout, drain.wait, drain.min_in_service) == (12, "nginx", 2)
    assert drain.load_balancer.hosts == "lb" and drain.load_balancer.template == "lb/drain.conf.j2"
    minimal = (
        "application: app\ndeploy_to: /srv/app\nsource: {path: src}\n"
        "strategy: {drain: {load_balancer: {template: t.j2, dest: /x, reload: r}}}\n"
    )
    defaults = parse_playbook(minimal, "deploy.yml").strategy.drain
    assert defaults is not None
    assert (defaults.timeout, defaults.wait, defaults.min_in_service) == (30, "timeout", 1)


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ("{drain: {timeout: 3}}", "strategy.drain: missing required key 'load_balancer'"),
        (
            "{drain: {wait: forever, load_balancer: {template: t, dest: /x, reload: r}}}",
            "strategy.drain.wait",
        ),
        (
            "{drain: {min_in_service: -1, load_balancer: {template: t, dest: /x, reload: r}}}",
            "strategy.drain.min_in_service",
        ),
        (
            "{kind: blue_green, blue_green: {load_balancer: {template: t, dest: /x, reload: r}},"
            " drain: {load_balancer: {template: t, dest: /x, reload: r}}}",
            "drain applies to kind rolling or canary",
        ),
    ],
)
def test_bad_sections_name_the_key(strategy: str, message: str) -> None:
    text = "application: app\ndeploy_to: /srv/app\nsource: {path: src}\nstrategy: " + strategy
    with pytest.raises(ConfigError) as err:
        parse_playbook(text, "deploy.yml")
    assert message in str(err.value)


def test_capacity_floor() -> None:
    assert keeps_floor(4, 1, 1) and keeps_floor(4, 3, 1) and not keeps_floor(4, 4, 1)
    assert keeps_floor(4, 4, 0) and not keeps_floor(2, 1, 2) and keeps_floor(1, 0, 5)
    assert plan_batches([["a"], ["b", "c"], ["d"]], 4, 2) == (
        BatchDrain(1, ("a",), True, 3),
        BatchDrain(2, ("b", "c"), True, 2),
        BatchDrain(3, ("d",), True, 3),
    )
    whole = plan_batches([["a", "b"]], 2, 1)
    assert whole == (
        BatchDrain(
            1, ("a", "b"), False, 2, "draining it would leave 0 of 2 in service (min_in_service 1)"
        ),
    )


def test_load_balancers_are_set_aside_and_batches_cut_from_the_app_hosts(tmp_path: Path) -> None:
    apps, drain = drain_for(tmp_path, serial='["50%"]')
    assert [hp.name for hp in apps.hosts] == ["w1", "w2", "w3", "w4"]  # type: ignore[attr-defined]
    assert apps.batches == (("w1", "w2"), ("w3", "w4"))  # type: ignore[attr-defined]
    assert apps.migrate_host == "w1"  # type: ignore[attr-defined]
    assert drain.lb_names == ("lb1",) and drain.app_hosts == ("w1", "w2", "w3", "w4")
    assert [b.drained for b in drain.batches] == [True, True]
    lb = drain.lbs[0]
    assert lb.dest == "/etc/nginx/conf.d/app.conf" and lb.reload == "nginx -s reload"
    assert lb.config(frozenset({"w2"})).decode() == (
        "upstream app {\n"
        "    server 127.0.0.2:8000;  # w1\n"
        "    server 127.0.0.3:8000 down;  # w2\n"
        "    server 127.0.0.4:8000;  # w3\n"
        "    server 127.0.0.5:8000;  # w4\n"
        "}\n"
    )
    assert lb.verify is not None and lb.verify[0].health_url == "http://127.0.0.6:8080/health"
    check = lb.verify[1].http  # any release answering will do
    assert check is not None and check.via == "ssh" and not check.expect_version


def test_the_floor_keeps_a_batch_in_service_and_the_dry_run_says_so(tmp_path: Path) -> None:
    _, drain = drain_for(tmp_path, serial="[1, 3]", floor=2)
    assert [(b.hosts, b.drained) for b in drain.batches] == [
        (("w1",), True),
        (("w2", "w3", "w4"), False),
    ]
    text = describe_drain(drain)
    assert "batch 1: w1 leave(s) the load balancer (3 in service), restart, come back" in text
    assert (
        "batch 2: w2, w3, w4 restart(s) in service: draining it would leave 1 of 4 in service"
        " (min_in_service 2)" in text
    )
    assert "== lb1: batch 1 drained" in text and "server 127.0.0.2:8000 down;" in text
    assert "== lb1: batch 2" not in text


def test_a_template_that_ignores_down_is_refused(tmp_path: Path) -> None:
    ignoring = TEMPLATE.replace("{% if h.down %} down{% endif %}", "")
    with pytest.raises(ConfigError, match="does not mark hosts down"):
        drain_for(tmp_path, template=ignoring)


def test_the_load_balancer_must_be_in_the_inventory_and_the_selection(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--limit leaves out the load balancer lb1"):
        drain_for(tmp_path, limit={"w1", "w2"})
    _, drain = drain_for(tmp_path, limit={"w1", "lb1"})
    assert drain.app_hosts == ("w1",)
    # One app host: draining it would leave none, so it restarts in service.
    assert not drain.batches[0].drained


def test_drain_script_text() -> None:
    script = drain_scripts.set_upstream(
        "run1",
        dest="/etc/lb/app.conf",
        config=b"upstream app { server 1.2.3.4:80 down; }\n",
        validate="nginx -t",
        reload="nginx -s reload",
        settle="timeout",
        timeout=2.5,
        what="drains w1",
    )
    assert script.step == "drain" and script.stdin.size == 0
    text = script.render()
    assert (
        "printf '%s' 'upstream app { server 1.2.3.4:80 down; }\n' > /etc/lb/.app.conf.new-run1"
        in text
    )
    assert "mv -fT /etc/lb/.app.conf.new-run1 /etc/lb/app.conf" in text
    assert "if ! ( nginx -t ) 2>&1; then" in text and "exit 67; fi" in text
    assert "if ! ( nginx -s reload ) 2>&1; then" in text and "exit 68; fi" in text
    assert text.index("nginx -t") < text.index("nginx -s reload")
    assert text.rstrip().endswith("sleep 2.5")
    nginx = drain_scripts.set_upstream(
        "run1",
        dest="/etc/lb/app.conf",
        config=b"x",
        validate=None,
        reload="nginx -s reload",
        settle="nginx",
        timeout=3,
        what="puts w1 back",
        step="undrain",
    )
    text = nginx.render()
    assert nginx.step == "undrain"
    # The workers are listed before the reload and waited for after it, at most 30 tenths.
    assert text.index("before=$(nginx_workers)") < text.index("nginx -s reload")
    assert "if [ $i -ge 30 ]; then echo @@drain-timeout" in text
