"""Resource use per host without a host: the lines the prepare script runs, parsing what a
host answers, the limits, and the one line status prints."""

from __future__ import annotations

import base64

from deployer.config.model import ResourceLimits
from deployer.config.playbook import parse_playbook
from deployer.facts import parse_facts
from deployer.remote import scripts
from deployer.resources import describe, over_limits

L = scripts.Layout("/srv/app")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# What a host prints: the host's own values base64-framed (`scripts.section`).
ANSWER = f"""\
@@current {b64("/srv/app/releases/r1")}
@@df 1000
@@resources {b64("cpus=2 load=3.50,1.00,0.50 mem=1000000,40000 disk=100000,5000 inodes=1000,900")}
@@app pidfile /srv/app/shared/run/app.pid
@@proc {b64("81 1.5 24576 python3")}
@@proc {b64("90 0.0 1024 sh")}
@@end
"""


def test_prepare_reports_resources_always_and_processes_when_told_where() -> None:
    plain = scripts.prepare(L, lock_info=None).render()
    assert '"cpus=$(nproc 2>/dev/null)"' in plain
    assert 'df -Pi "$df_dir"' in plain and "/proc/meminfo" in plain
    assert "proc_line" not in plain
    text = scripts.prepare(L, lock_info=None, pidfile="shared/run/app.pid").render()
    assert "pid=$(head -n1 /srv/app/shared/run/app.pid 2>/dev/null | tr -dc 0-9)" in text
    assert "echo @@app 'pidfile /srv/app/shared/run/app.pid'" in text
    unit = scripts.prepare(L, lock_info=None, systemd_unit="my app.service").render()
    assert "systemctl show -p MainPID --value 'my app.service'" in unit


def test_a_hosts_answer_is_parsed_and_judged() -> None:
    r = parse_facts(ANSWER).resources
    assert r is not None
    assert r.cpus == 2 and r.load == (3.5, 1.0, 0.5)
    assert r.memory_available_percent == 4.0 and r.disk_free_percent == 5.0
    assert [(p.pid, p.rss_kb, p.name) for p in r.processes] == [
        (81, 24576, "python3"),
        (90, 1024, "sh"),
    ]
    assert over_limits(r, ResourceLimits()) == [
        "memory available 4.0% is below 5%",
        "disk free under deploy_to 5.0% is below 10%",
    ]
    assert over_limits(r, ResourceLimits(max_load_per_cpu=1.5, min_disk_free_percent=None)) == [
        "load 3.50 on 2 CPU(s) is above 1.5 per CPU",
        "memory available 4.0% is below 5%",
    ]
    assert describe(r) == (
        "load 3.50/2 CPUs, memory 39.1 MiB available (4%), disk 4.9 MiB free (5%), inodes 90%"
        " free; app (pidfile /srv/app/shared/run/app.pid): pid 81 python3 1.5% CPU 24.0 MiB,"
        " pid 90 sh 0.0% CPU 1.0 MiB"
    )


def test_an_older_host_without_the_report_has_none() -> None:
    assert parse_facts("@@current \n@@end\n").resources is None


def test_the_resources_section_is_validated() -> None:
    base = "application: app\ndeploy_to: /srv/app\nsource: {path: .}\n"
    book = parse_playbook(
        base + "resources: {systemd_unit: app.service, warn: {max_load_per_cpu: 4,"
        " min_inodes_free_percent: null}}\n",
        "deploy.yml",
    )
    assert book.resources.systemd_unit == "app.service"
    assert book.resources.warn == ResourceLimits(max_load_per_cpu=4.0, min_inodes_free_percent=None)
    for bad, message in (
        ("resources: {pidfile: a, systemd_unit: b}", "not both"),
        ("resources: {warn: {min_disk_free_percent: 150}}", "must be at most 100"),
        ("resources: {pidfile: ../../etc/x}", "'..'"),
    ):
        try:
            parse_playbook(base + bad + "\n", "deploy.yml")
        except Exception as exc:  # noqa: BLE001
            assert message in str(exc)
        else:
            raise AssertionError(bad)
