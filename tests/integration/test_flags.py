"""Feature flags on a live fleet (issue 4, "Feature flags"): flipped and rolled out by
percentage without a deploy or a restart, recorded in each host's history, and pushed
atomically (a reader on a host never sees a partial file)."""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from deployer import api
from deployer.flags import set_flag
from deployer.flags.runtime import bucket
from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, HOSTS, Project, make_project

FLAGS = """\
# Flags of the test fleet.
new-checkout:
  description: The new checkout flow
  enabled: false   # flipped by the test
"""

# Until deployer/tasks.py adds the `flags` collection itself, the project adds it.
TASKS = """\
from deployer.flags.tasks import flags
from deployer.tasks import ns

if "flags" not in ns.collections:
    ns.add_collection(flags)
"""

USERS = [f"user-{i}" for i in range(200)]


def with_flags(project: Project, text: str) -> Project:
    (project.root / "flags").mkdir(exist_ok=True)
    (project.root / "flags" / "test.yml").write_text(text)
    (project.root / "tasks.py").write_text(TASKS)
    return project


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path) -> Project:
    return with_flags(make_project(tmp_path / "project", clean_fleet), FLAGS)


def index(project: Project, host: str, user: str) -> dict[str, object]:
    address = project.fleet.host(host).address
    with urllib.request.urlopen(f"http://{address}:8000/?user={user}", timeout=10) as resp:
        body: dict[str, object] = json.loads(resp.read())
    return body


def checkouts(project: Project, host: str, users: list[str]) -> dict[str, object]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = pool.map(lambda u: index(project, host, u)["checkout"], users)
    return dict(zip(users, answers, strict=True))


def pid(project: Project, host: str) -> int:
    return int(project.sh(host, f"cat {APP_ROOT}/shared/run/app.pid").strip())


def test_flag_flipped_then_rolled_out_by_percentage_without_restart(project: Project) -> None:
    release = project.deploy()["web1"]
    pids = {host: pid(project, host) for host in HOSTS}
    assert {index(project, h, "alice")["checkout"] for h in HOSTS} == {"old"}

    on = project.invoke("flags.set", "new-checkout", "--on", "--env", "test")
    assert on.returncode == 0, on.stdout + on.stderr
    assert "pushed to 4 host(s), no restart" in on.stdout
    assert "enabled: true   # flipped by the test" in (project.root / "flags/test.yml").read_text()
    for host in HOSTS:
        body = index(project, host, "alice")
        assert body["checkout"] == "new", host
        assert body["pid"] == pids[host] == pid(project, host), f"{host} restarted"
        record = project.history(host)[-1]
        assert (record["action"], record["result"], record["release"]) == (
            "flags",
            "success",
            release,
        )
        assert record["change"] == "new-checkout: on"
        assert not project.locked(host)

    thirty = project.invoke("flags.set", "new-checkout", "--percent", "30", "--env", "test")
    assert thirty.returncode == 0, thirty.stdout + thirty.stderr
    expected = {u: "new" if bucket("new-checkout", u) < 30 else "old" for u in USERS}
    share = sum(a == "new" for a in expected.values())
    assert 40 <= share <= 80, share  # roughly 30% of 200
    for host in HOSTS:  # the same answer for each user on every host...
        assert checkouts(project, host, USERS) == expected, host
    assert checkouts(project, "web1", USERS[:50]) == {u: expected[u] for u in USERS[:50]}
    assert {host: pid(project, host) for host in HOSTS} == pids  # ...and no restart
    for host in HOSTS:
        assert project.current(host) == release
        assert [r["action"] for r in project.history(host)] == ["deploy", "flags", "flags"]

    listed = project.invoke("flags.list", "--env", "test")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "new-checkout: on 30%" in listed.stdout and "DRIFT" not in listed.stdout
    # A host whose file differs (a hand edit, a push that missed it) is drift, exit 6.
    project.sh("web3", f"echo '{{\"flags\": {{}}}}' > {APP_ROOT}/shared/flags.json")
    drift = project.invoke("flags.list", "--env", "test")
    assert drift.returncode == 6, drift.stdout + drift.stderr
    assert "  web3: flag missing  DRIFT" in drift.stdout


def test_push_is_atomic_for_a_reader_on_the_host(clean_fleet: Fleet, tmp_path: Path) -> None:
    # Big enough (about 30 KB) that a file written in place would be seen half-written;
    # few YAML nodes, so that parsing it on each push stays cheap.
    many = "".join(
        f"filler-{i}:\n  description: makes the pushed file big\n  enabled: true\n"
        f"  allow: [{', '.join(f'{j}-' + 'x' * 300 for j in range(10))}]\n"
        for i in range(10)
    )
    project = with_flags(make_project(tmp_path / "project", clean_fleet, ["web1"]), FLAGS + many)
    loaded = project.load()
    set_flag(loaded, api.Options(), "new-checkout", percent=0)  # no deploy needed first
    flags_json = f"{APP_ROOT}/shared/flags.json"
    stop = f"{APP_ROOT}/shared/stop-reader"
    reader = f"""python3 - <<'EOF'
import json, os, time
ok = bad = 0
seen = set()
end = time.monotonic() + 240
while not os.path.exists({stop!r}) and time.monotonic() < end:
    with open({flags_json!r}, "rb") as f:
        data = f.read()
    try:
        json.loads(data)
        ok += 1
        seen.add(data)
    except ValueError:
        bad += 1
    time.sleep(0.001)
print(json.dumps({{"ok": ok, "bad": bad, "versions": len(seen)}}))
EOF"""
    result: list[tuple[int, str]] = []
    thread = threading.Thread(target=lambda: result.append(project.fleet.exec("web1", reader)))
    thread.start()
    try:
        for i in range(50):
            set_flag(loaded, api.Options(), "new-checkout", percent=i + 1)
    finally:
        project.fleet.exec("web1", f"touch {stop}")
        thread.join(timeout=60)
    code, out = result[0]
    assert code == 0, out
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["bad"] == 0, counts
    assert counts["versions"] >= 10, counts  # it really read while the pushes happened
    assert (
        json.loads(project.sh("web1", f"cat {flags_json}"))["flags"]["new-checkout"]["percent"]
        == 50
    )
    history = project.history("web1")
    assert len(history) == 51 and {r["action"] for r in history} == {"flags"}
    assert project.sh("web1", f"ls -A {APP_ROOT}/shared").split() == ["flags.json", "stop-reader"]


def test_list_exits_5_when_a_host_cannot_be_reached(project: Project) -> None:
    inventory = project.root / "inventories" / "test.yml"
    inv = yaml.safe_load(inventory.read_text())
    web1 = inv["all"]["children"]["web"]["hosts"]["web1"]
    ghost = {**web1, "ansible_host": "127.0.0.254"}  # loopback, nothing listens
    inv["all"]["children"]["web"]["hosts"]["ghost"] = ghost
    inventory.write_text(yaml.safe_dump(inv))
    out = project.invoke("flags.list", "--env", "test")
    assert out.returncode == 5, out.stdout + out.stderr
    assert "ghost: UNREACHABLE" in out.stdout and "web1" in out.stdout
