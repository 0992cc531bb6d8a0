"""Blue-green without hosts: the playbook section, the traffic plan (colors, load balancers,
rendered upstream configs, the idle color's deploy plan), the live color from history, and
the exact text of the load balancer's switch script."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from deployer.config import parse_playbook
from deployer.errors import ConfigError, PreflightError
from deployer.history import Record, parse_records
from deployer.remote import lb
from deployer.remote.scripts import Layout
from deployer.strategies.bluegreen.switch import _where
from deployer.strategies.bluegreen.traffic import TrafficPlan, color_plan, live_color, plan_traffic
from tests.unit.planning import RELEASE, load_balancer, plan_for, write_lb_template

INVENTORY = """
all:
  vars: {app_port: 8000}
  children:
    blue: {hosts: {b1: {ansible_host: 127.0.0.2}, b2: {ansible_host: 127.0.0.3}}}
    green: {hosts: {g1: {ansible_host: 127.0.0.4}, g2: {ansible_host: 127.0.0.5}}}
    lb: {hosts: {lb1: {ansible_host: 127.0.0.6}}}
    migrate: {hosts: {b1: }}
"""

PLAYBOOK = """
application: app
deploy_to: /srv/app
source: {path: src}
migrate: {command: ./migrate, run_on: migrate}
vars: {app_listen: "{{ ansible_host }}"}
health:
  http: {url: "http://{{ ansible_host }}:8000/health", expect_version: true}
strategy:
  kind: blue_green
  blue_green:
""" + load_balancer("upstream.conf.j2")

UPSTREAM = """\
upstream {{ application }} { # {{ color }}
{% for h in hosts %}    server {{ h.vars.app_listen }}:{{ h.vars.app_port }};  # {{ h.name }}
{% endfor %}}
"""


def traffic_for(tmp_path: Path, inventory: str = INVENTORY, limit: set[str] | None = None):
    write_lb_template(tmp_path, "upstream.conf.j2", UPSTREAM)
    plan, inv = plan_for(inventory, PLAYBOOK, tmp_path, RELEASE, limit=limit)
    return plan, plan_traffic(plan, inv, tmp_path)


def test_the_section_is_read_with_defaults_for_colors() -> None:
    bg = parse_playbook(PLAYBOOK, "deploy.yml").strategy.blue_green
    assert bg is not None and bg.colors == ("blue", "green")
    lbc = bg.load_balancer
    assert lbc.hosts == "lb" and lbc.template == "lb/upstream.conf.j2"
    assert lbc.dest is not None and lbc.dest.text == "/etc/nginx/conf.d/{{ application }}.conf"
    assert lbc.reload is not None and lbc.reload.text == "nginx -s reload"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{}", "strategy.blue_green: missing required key 'load_balancer'"),
        (
            "{colors: [blue], load_balancer: {template: t, dest: /x, reload: r}}",
            "strategy.blue_green.colors: expected two inventory group names, got 1",
        ),
        (
            "{colors: [a, a], load_balancer: {template: t, dest: /x, reload: r}}",
            "strategy.blue_green.colors: the two colors must differ, got 'a' twice",
        ),
        (
            "{load_balancer: {template: t, dest: x.conf, reload: r}}",
            "strategy.blue_green.load_balancer.dest: must be an absolute path, got 'x.conf'",
        ),
        (
            "{load_balancer: {template: t, dest: /x}}",
            "strategy.blue_green.load_balancer: missing required key 'reload'",
        ),
    ],
)
def test_section_errors_name_the_key(section: str, message: str) -> None:
    text = (
        "application: a\ndeploy_to: /srv\nsource: {path: .}\n"
        f"strategy:\n  kind: blue_green\n  blue_green: {section}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_playbook(text, "deploy.yml")
    assert message in str(info.value)


def test_kind_blue_green_without_its_section_is_an_error() -> None:
    text = "application: a\ndeploy_to: /srv\nsource: {path: .}\nstrategy: {kind: blue_green}\n"
    with pytest.raises(ConfigError, match="needs a blue_green section"):
        parse_playbook(text, "deploy.yml")


def test_traffic_plan_splits_colors_and_renders_both_configs(tmp_path: Path) -> None:
    plan, traffic = traffic_for(tmp_path)
    assert traffic.members == {"blue": ("b1", "b2"), "green": ("g1", "g2")}
    assert traffic.lb_names == ("lb1",)
    (lb1,) = traffic.lbs
    assert lb1.dest == "/etc/nginx/conf.d/app.conf"
    assert lb1.validate == "nginx -t -q" and lb1.reload == "nginx -s reload"
    assert lb1.configs["green"].decode() == textwrap.dedent(
        """\
        upstream app { # green
            server 127.0.0.4:8000;  # g1
            server 127.0.0.5:8000;  # g2
        }
        """
    )
    assert b"127.0.0.2:8000" in lb1.configs["blue"]
    assert lb1.verify is not None
    assert lb1.verify[0].health_url == "http://127.0.0.6:8080/health"
    check = lb1.verify[1].http  # the new color's release is what must answer
    assert check is not None and check.via == "ssh" and check.expect_version


def test_idle_color_plan_migrates_on_an_idle_host(tmp_path: Path) -> None:
    plan, traffic = traffic_for(tmp_path)
    green = color_plan(plan, traffic, "green")
    assert [h.name for h in green.hosts] == ["g1", "g2"]
    assert green.batches == (("g1", "g2"),)
    assert green.migrate_host == "g1"  # migrate.run_on names a blue host: not staged there
    assert color_plan(plan, traffic, "blue").migrate_host == "b1"


def test_a_limit_must_keep_whole_colors_and_the_load_balancer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="leaves out g2 of color green"):
        traffic_for(tmp_path, limit={"b1", "b2", "g1", "lb1"})
    with pytest.raises(ConfigError, match="leaves out the load balancer lb1"):
        traffic_for(tmp_path, limit={"b1", "b2", "g1", "g2"})


def test_a_host_outside_the_colors_is_refused(tmp_path: Path) -> None:
    inventory = INVENTORY + "    other: {hosts: {x1: {ansible_host: 127.0.0.7}}}\n"
    with pytest.raises(ConfigError, match="x1 is in neither blue, green nor the load balancer"):
        traffic_for(tmp_path, inventory)


def test_a_missing_color_group_is_refused(tmp_path: Path) -> None:
    inventory = INVENTORY.replace("green:", "teal:")
    with pytest.raises(ConfigError, match="no inventory group 'green'"):
        traffic_for(tmp_path, inventory)


def _traffic(color: str | None) -> Record:
    return Record("t", "u", "R", "traffic", "success", "r", color=color)


def test_live_color_comes_from_the_last_traffic_record(tmp_path: Path) -> None:
    _, traffic = traffic_for(tmp_path)
    deploy = Record("t", "u", "R", "deploy", "success", "r")
    assert live_color(traffic, {"lb1": []}) is None
    assert live_color(traffic, {"lb1": [_traffic("blue"), deploy, _traffic("green")]}) == "green"
    failed = Record("t", "u", "R", "traffic", "failed", "r", color="blue")
    assert live_color(traffic, {"lb1": [_traffic("green"), failed]}) == "green"


def test_load_balancers_that_disagree_stop_the_run(tmp_path: Path) -> None:
    _, one = traffic_for(tmp_path)
    first = one.lbs[0]
    lb2 = replace(first, hp=replace(first.hp, host=replace(first.hp.host, name="lb2")))
    two = TrafficPlan(one.colors, one.members, (one.lbs[0], lb2))
    with pytest.raises(PreflightError, match="disagree on the live color"):
        live_color(two, {"lb1": [_traffic("blue")], "lb2": [_traffic("green")]})


def test_color_is_kept_in_history_records_and_left_out_when_unset() -> None:
    with_color = _traffic("green").to_json()
    assert '"color":"green"' in with_color
    assert "color" not in Record("t", "u", "R", "deploy", "success", "r").to_json()
    assert parse_records([with_color])[0].color == "green"


def test_switch_traffic_script_installs_validates_reloads_and_records() -> None:
    script = lb.switch_traffic(
        Layout("/srv/app"),
        "run1",
        dest="/etc/nginx/conf.d/app.conf",
        config=b"upstream app {}\n",
        validate="nginx -t -q",
        reload="nginx -s reload",
        color="green",
        release="R2",
        history=['{"action":"traffic"}'],
    )
    assert script.step == "traffic"
    assert script.stdin.segments == (b"upstream app {}\n",)
    restore = (
        'if [ "$had_previous" = 1 ]; then cp -p /etc/nginx/conf.d/.app.conf.previous'
        " /etc/nginx/conf.d/.app.conf.new-run1 && mv -fT /etc/nginx/conf.d/.app.conf.new-run1"
        " /etc/nginx/conf.d/app.conf; else rm -f /etc/nginx/conf.d/app.conf; fi"
    )
    assert script.render().splitlines() == [
        "set -eu",
        "echo '@@step write'",
        "mkdir -p /etc/nginx/conf.d /srv/app/.deploy",
        "head -c 16 > /etc/nginx/conf.d/.app.conf.new-run1 &&"
        ' [ "$(stat -c %s /etc/nginx/conf.d/.app.conf.new-run1)" = 16 ] ||'
        " { rm -f /etc/nginx/conf.d/.app.conf.new-run1;"
        " echo 'writing /etc/nginx/conf.d/.app.conf.new-run1 failed' >&2; exit 1; }",
        "chmod 0644 /etc/nginx/conf.d/.app.conf.new-run1",
        "if [ -e /etc/nginx/conf.d/app.conf ]; then had_previous=1;"
        " cp -p /etc/nginx/conf.d/app.conf /etc/nginx/conf.d/.app.conf.previous;"
        " else had_previous=0; rm -f /etc/nginx/conf.d/.app.conf.previous; fi",
        "echo '@@step install'",
        "mv -fT /etc/nginx/conf.d/.app.conf.new-run1 /etc/nginx/conf.d/app.conf",
        "echo '@@step validate'",
        f"if ! ( nginx -t -q ) 2>&1; then {restore}; echo ''\"'\"'nginx -t -q'\"'\"' rejected"
        " the new /etc/nginx/conf.d/app.conf; the previous config is back in place and traffic"
        " was not switched' >&2; exit 67; fi",
        "echo '@@step reload'",
        f"if ! ( nginx -s reload ) 2>&1; then {restore}; echo ''\"'\"'nginx -s reload'\"'\"'"
        " failed; the previous /etc/nginx/conf.d/app.conf is back in place (the load balancer"
        " still runs its old config, or is down)' >&2; exit 68; fi",
        "echo '@@step record'",
        "printf '%s\\n' '{\"action\":\"traffic\"}' >> /srv/app/.deploy/history.jsonl",
        "printf '%s\\n' 'green R2' > /srv/app/.deploy/live.tmp",
        "mv -fT /srv/app/.deploy/live.tmp /srv/app/.deploy/live",
        "echo @@live green",
    ]


def test_a_failed_switch_names_the_load_balancers_pointed_back_and_those_that_were_not() -> None:
    assert _where([], [], "blue") == ""
    assert _where(["lb1"], [], None) == ""
    assert _where(["lb1", "lb2"], [], "blue") == "; lb1, lb2 pointed back at blue"
    both = _where(["lb1", "lb2"], ["lb2"], "blue")
    assert both.startswith("; lb1 pointed back at blue; lb2 could not be pointed back at blue")
    assert "may still send traffic to the new color" in both
    assert "pointed back at blue;" not in _where(["lb1"], ["lb1"], "blue")
