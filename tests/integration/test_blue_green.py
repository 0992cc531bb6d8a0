"""Blue-green on a real fleet behind real nginx: web1, web2 blue; web3, web4 green; web5 the
load balancer (nginx run by the deploy user). Normal paths and the failure paths: an
unhealthy idle color, and a config nginx rejects."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from deployer import api
from deployer.errors import DeployFailed, PreflightError
from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, REPO, Project, break_on, fix, make_project
from tests.integration.nginx import UPSTREAM, Nginx

BLUE = ["web1", "web2"]
GREEN = ["web3", "web4"]
APPS = BLUE + GREEN


def make_blue_green_project(root: Path, fleet: Fleet, nginx: Nginx) -> Project:
    project = make_project(root, fleet, APPS)
    groups = {"blue": BLUE, "green": GREEN, "lb": ["web5"], "migrate": ["web1"]}
    (root / "inventories" / "test.yml").write_text(fleet.inventory_yaml(groups))
    (root / "templates" / "lb").mkdir()
    shutil.copy(REPO / "templates" / "lb" / "upstream.conf.j2", root / "templates" / "lb")
    project.playbook(
        strategy={
            "kind": "blue_green",
            "blue_green": {"load_balancer": nginx.load_balancer_settings()},
        }
    )
    return project


@pytest.fixture
def nginx(clean_fleet: Fleet) -> Nginx:
    lb = Nginx(clean_fleet, "web5")
    lb.start()
    return lb


@pytest.fixture
def project(clean_fleet: Fleet, nginx: Nginx, tmp_path: Path) -> Project:
    return make_blue_green_project(tmp_path / "project", clean_fleet, nginx)


def served(nginx: Nginx, count: int = 6) -> set[str]:
    """Versions nginx serves right now (a few requests, so every upstream server answers)."""
    seen = set()
    for _ in range(count):
        with urllib.request.urlopen(nginx.url + "/health", timeout=5) as resp:
            seen.add(json.loads(resp.read())["version"])
    return seen


def lb_history(project: Project) -> list[dict[str, object]]:
    code, out = project.fleet.exec("web5", f"cat {APP_ROOT}/.deploy/history.jsonl")
    return [json.loads(line) for line in out.splitlines() if line.strip()] if code == 0 else []


def assert_unlocked(project: Project) -> None:
    for host in [*APPS, "web5"]:
        assert not project.locked(host), f"{host}: lock left behind"
        assert project.leftovers(host) == [], f"{host}: staging debris"


def test_first_deploy_goes_to_blue_then_points_nginx_at_it(project: Project, nginx: Nginx) -> None:
    done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no live color yet (first deploy): deploying blue: web1 web2" in done.stdout
    v1 = project.current("web1")
    assert v1 and project.current("web2") == v1
    assert project.current("web3") is None and project.current("web4") is None
    upstream = nginx.upstream()
    assert "traffic goes to the blue hosts" in upstream
    for host in BLUE:
        assert f"{project.fleet.host(host).address}:8000" in upstream
    assert served(nginx) == {v1}
    assert lb_history(project)[-1]["action"] == "traffic"
    assert lb_history(project)[-1]["color"] == "blue"
    assert project.history("web1")[-2]["color"] == "blue"  # the deploy record
    assert project.history("web3")[-1]["color"] == "blue"  # traffic is recorded on every host
    assert project.sh("web5", f"cat {APP_ROOT}/.deploy/live", user="deploy").split() == [
        "blue",
        v1,
    ]
    status = project.invoke("status", "--env", "test")
    assert "live color: blue" in status.stdout, status.stdout
    assert "[blue, live]" in status.stdout and "[load balancer]" in status.stdout
    assert_unlocked(project)


def test_second_deploy_goes_to_green_while_blue_serves_and_rollback_switches_back(
    project: Project, nginx: Nginx
) -> None:
    v1 = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("second\n")
    result = project.deploy()
    v2 = result["web3"]
    assert v2 != v1 and result["web4"] == v2
    assert result["web1"] == v1 and project.current("web1") == v1  # blue untouched
    assert served(nginx) == {v2}
    assert "green" in nginx.upstream() and project.fleet.host("web1").address not in (
        nginx.upstream()
    )

    back = project.invoke("rollback", "--env", "test")
    assert back.returncode == 0, back.stdout + back.stderr
    assert served(nginx) == {v1}
    assert all(project.current(h) == v2 for h in GREEN)  # green keeps its release, idle
    assert lb_history(project)[-1]["color"] == "blue"
    assert lb_history(project)[-1]["release"] == v1
    status = project.invoke("status", "--env", "test")
    assert "live color: blue" in status.stdout
    assert status.returncode == 0, status.stdout  # two colors on two releases is no drift

    # The next deploy goes to the idle color again: green.
    (project.app / "VERSION_NOTE").write_text("third\n")
    v3 = project.deploy()["web3"]
    assert served(nginx) == {v3} and project.current("web1") == v1
    assert_unlocked(project)


def test_unhealthy_idle_color_never_gets_traffic_and_returns_to_its_release(
    project: Project, nginx: Nginx
) -> None:
    v1 = project.deploy()["web1"]  # blue
    (project.app / "VERSION_NOTE").write_text("second\n")
    v2 = project.deploy()["web3"]  # green, live
    before = nginx.upstream()
    break_on(project, "*")
    (project.app / "VERSION_NOTE").write_text("broken\n")
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "blue is unhealthy" in failed.stderr and "traffic was not switched" in failed.stderr
    assert "green still serves" in failed.stderr
    assert nginx.upstream() == before
    assert served(nginx) == {v2}
    for host in BLUE:
        assert project.current(host) == v1  # back on its previous release
        assert project.health(host)[1]["version"] == v1
    assert lb_history(project)[-1]["color"] == "green"
    assert_unlocked(project)


def test_first_deploy_unhealthy_leaves_blue_on_a_complete_release_and_no_traffic(
    project: Project, nginx: Nginx
) -> None:
    break_on(project, "*")
    with pytest.raises(DeployFailed, match="traffic was not switched"):
        project.deploy()
    for host in BLUE:
        release = project.current(host)
        assert release is not None and project.complete(host, release)
    assert "down;" in nginx.upstream()  # still the placeholder
    assert lb_history(project) == []
    # Nothing was ever live: a rollback has nothing to switch back from.
    with pytest.raises(PreflightError, match="no live color"):
        api.rollback(project.load(), api.Options())
    fix(project)
    assert_unlocked(project)


def test_config_rejected_by_nginx_keeps_traffic_and_restores_the_file(
    project: Project, nginx: Nginx
) -> None:
    v1 = project.deploy()["web1"]
    before = nginx.upstream()
    template = project.root / "templates" / "lb" / "upstream.conf.j2"
    template.write_text(template.read_text() + "this_is_not_nginx on;\n")
    (project.app / "VERSION_NOTE").write_text("second\n")
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "switching traffic to green failed on web5" in failed.stderr
    assert 'unknown directive "this_is_not_nginx"' in failed.stderr  # nginx's own words
    assert "previous config is back in place" in failed.stderr
    assert nginx.upstream() == before
    assert served(nginx) == {v1}
    assert lb_history(project)[-1]["color"] == "blue"
    # Green was deployed and healthy, but never live: back where it was (nothing).
    assert all(project.history(h)[-1]["result"] != "success" for h in GREEN)
    assert_unlocked(project)


def test_rollback_refuses_when_the_other_color_is_unhealthy(project: Project, nginx: Nginx) -> None:
    v1 = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("second\n")
    v2 = project.deploy()["web3"]
    project.fleet.exec("web2", "pkill -f app.py", user="deploy")  # blue's app is down
    refused = project.invoke("rollback", "--env", "test")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "blue is not healthy" in refused.stderr and "traffic stays on green" in refused.stderr
    assert served(nginx) == {v2}
    assert lb_history(project)[-1]["color"] == "green"
    assert project.current("web1") == v1
    assert_unlocked(project)


def test_dry_run_shows_both_colors_and_the_switch_script(project: Project) -> None:
    out = project.invoke("deploy", "--env", "test", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "blue: web1 web2" in out.stdout and "green: web3 web4" in out.stdout
    assert "== web5: switch to green" in out.stdout
    assert f"mv -fT '/srv/lb/.upstream.conf.new-<run>' {UPSTREAM}" in out.stdout


def test_two_load_balancers_one_rejects_the_switch_the_other_is_pointed_back(
    clean_fleet: Fleet, tmp_path: Path
) -> None:
    """Load balancers switch one at a time (no two can switch atomically); when a later one
    fails, those already switched go back, so both keep sending traffic to one color."""
    lbs = {"web4": Nginx(clean_fleet, "web4"), "web5": Nginx(clean_fleet, "web5")}
    for lb in lbs.values():
        lb.start()
    project = make_project(tmp_path / "project", clean_fleet, ["web1", "web2"])
    groups = {"blue": ["web1"], "green": ["web2"], "lb": list(lbs), "migrate": ["web1"]}
    (project.root / "inventories" / "test.yml").write_text(clean_fleet.inventory_yaml(groups))
    (project.root / "templates" / "lb").mkdir()
    shutil.copy(REPO / "templates" / "lb" / "upstream.conf.j2", project.root / "templates" / "lb")
    project.playbook(
        strategy={
            "kind": "blue_green",
            "blue_green": {"load_balancer": lbs["web4"].load_balancer_settings()},
        }
    )
    v1 = project.deploy()["web1"]
    assert all(served(lb) == {v1} for lb in lbs.values())

    # From now on web5's nginx refuses any config: its own file has a line nginx rejects.
    clean_fleet.exec("web5", "echo 'this_is_not_nginx on;' >> /srv/lb/nginx.conf", user="deploy")
    (project.app / "VERSION_NOTE").write_text("second\n")
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "switching traffic to green failed on web5" in failed.stderr
    assert "web4 pointed back at blue" in failed.stderr
    # Pointing back is verified through web4's verify_url as the switch forward is, so the
    # deploy returns only once blue answers there.
    assert all(served(lb) == {v1} for lb in lbs.values())
    for lb in lbs:
        code, out = clean_fleet.exec(lb, f"tail -n1 {APP_ROOT}/.deploy/history.jsonl")
        assert code == 0 and json.loads(out)["color"] == "blue", (lb, out)
    for host in ["web1", "web2", *lbs]:
        assert not project.locked(host), f"{host}: lock left behind"


def test_rollback_hooks_run_on_the_color_traffic_goes_back_to(
    project: Project, nginx: Nginx
) -> None:
    log = "/tmp/bg-rollback-hooks.log"
    for host in APPS:  # outside /srv, so the fleet's reset between tests does not clear it
        project.fleet.exec(host, f"rm -f {log} /tmp/no-rollback")
    v1 = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("second\n")
    v2 = project.deploy()["web3"]
    project.playbook(
        hooks={
            # Refuses while the marker exists, as a maintenance window check might.
            "before_rollback": [
                f'echo "$DEPLOY_HOOK $RELEASE_ID $ROLLBACK_FROM $DEPLOY_HOSTS" >> {log};'
                " test ! -e /tmp/no-rollback || { echo change-freeze >&2; exit 3; }"
            ],
            "after_rollback": [f'echo "$DEPLOY_HOOK $RELEASE_ID $ROLLBACK_FROM" >> {log}'],
        }
    )
    project.fleet.exec("web1", "touch /tmp/no-rollback", user="deploy")
    refused = project.invoke("rollback", "--env", "test")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "change-freeze" in refused.stderr and "traffic stays on green" in refused.stderr
    assert served(nginx) == {v2} and lb_history(project)[-1]["color"] == "green"
    assert_unlocked(project)

    project.fleet.exec("web1", "rm /tmp/no-rollback", user="deploy")
    project.fleet.exec("web1", f"rm -f {log}", user="deploy")
    back = project.invoke("rollback", "--env", "test")
    assert back.returncode == 0, back.stdout + back.stderr
    assert served(nginx) == {v1}
    for host in BLUE:  # the color traffic went back to, with the release it runs
        code, out = project.fleet.exec(host, f"cat {log}")
        assert code == 0, out
        assert out.splitlines()[-2:] == [
            f"before_rollback {v1} {v2} web1 web2",
            f"after_rollback {v1} {v2}",
        ], (host, out)
    for host in GREEN:
        assert project.fleet.exec(host, f"test -e {log}")[0] != 0, host  # not the other color
    assert_unlocked(project)


def test_failing_after_switch_hook_returns_the_idle_color_and_keeps_traffic(
    project: Project, nginx: Nginx
) -> None:
    v1 = project.deploy()["web1"]
    (project.app / "VERSION_NOTE").write_text("second\n")
    v2 = project.deploy()["web3"]  # green live, blue idle on v1
    project.playbook(hooks={"after_switch": ["echo smoke-test-failed >&2; exit 9"]})
    (project.app / "VERSION_NOTE").write_text("third\n")
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "smoke-test-failed" in failed.stderr
    assert served(nginx) == {v2} and lb_history(project)[-1]["color"] == "green"
    for host in BLUE:  # switched to the third release, then returned: never served
        assert project.current(host) == v1, host
        assert project.health(host)[1]["version"] == v1
    # So rollback still has a healthy, successfully deployed color to go back to.
    back = project.invoke("rollback", "--env", "test")
    assert back.returncode == 0, back.stdout + back.stderr
    assert served(nginx) == {v1}
    assert_unlocked(project)
