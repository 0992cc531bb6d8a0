"""The sample app of examples/app, run locally on 127.0.0.1: health, test hooks, migrations and
the restart script. Each test works on a copy of the app, so hook files never touch the repo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

APP_SRC = Path(__file__).resolve().parents[2] / "examples" / "app"
REVISION_ID = "20240131T120005Z-abcdef0"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    dest = tmp_path / "release"
    shutil.copytree(APP_SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "shared" / "db" / "app.sqlite3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def migrate(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(app_dir / "migrate.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_until_serving(url: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            get(url, timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@contextmanager
def running_app(app_dir: Path, *args: str, port: int | None = None) -> Iterator[str]:
    """Run app.py until the block ends; yield its base URL. Without `port` (the one app.ini
    names), listen on 127.0.0.1 at a random free port."""
    cmd = [sys.executable, str(app_dir / "app.py"), *args]
    if port is None:
        port = free_port()
        cmd += ["--listen", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/health")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def served(app_dir: Path, db: Path) -> Iterator[str]:
    assert migrate(app_dir, "--database", str(db)).returncode == 0
    with running_app(app_dir, "--database", str(db)) as base:
        yield base


# ------------------------------------------------------------------------------ health


def test_health_reports_status_timestamp_version_and_schema(served: str) -> None:
    before = time.time()
    status, body = get(served + "/health")
    assert status == 200
    assert body["status"] == "healthy"
    assert isinstance(body["timestamp"], float) and before - 1 <= body["timestamp"] <= time.time()
    assert body["version"] == "dev"
    assert body["schema"] == 2


def test_health_version_is_the_release_id_from_revision(app_dir: Path, db: Path) -> None:
    (app_dir / "REVISION").write_text(f"{REVISION_ID}\ndir:{'0' * 64}\n")
    migrate(app_dir, "--database", str(db))
    with running_app(app_dir, "--database", str(db)) as base:
        assert get(base + "/health")[1]["version"] == REVISION_ID
        assert get(base + "/")[1]["version"] == REVISION_ID


def test_index_counts_visits(served: str, db: Path) -> None:
    assert get(served + "/")[1]["visits"] == 1
    status, body = get(served + "/")
    assert status == 200 and body["visits"] == 2 and body["env"] == "development"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT DISTINCT visitor FROM visits").fetchall() == [("127.0.0.1",)]
    assert get(served + "/nope")[0] == 404


def test_broken_on_fails_health_only_on_listed_hosts(served: str, app_dir: Path) -> None:
    broken_on = app_dir / "BROKEN_ON"
    broken_on.write_text("127.0.0.23\n127.0.0.24\n")
    assert get(served + "/health")[0] == 200
    broken_on.write_text("127.0.0.23\n127.0.0.1\n")
    status, body = get(served + "/health")
    assert status == 500 and body["status"] == "unhealthy"
    assert body["reasons"] == ["BROKEN_ON lists 127.0.0.1"]
    broken_on.write_text("*\n")
    assert get(served + "/health")[0] == 500


def test_schema_older_than_required_is_unhealthy(app_dir: Path, db: Path) -> None:
    migration_002 = app_dir / "migrations" / "002_add_visitor_column.sql"
    saved = migration_002.read_text()
    migration_002.unlink()
    assert migrate(app_dir, "--database", str(db)).returncode == 0
    with running_app(app_dir, "--database", str(db)) as base:
        status, body = get(base + "/health")
        assert status == 500 and body["status"] == "unhealthy" and body["schema"] == 1
        assert "older than required 2" in body["reasons"][0]
        migration_002.write_text(saved)
        assert migrate(app_dir, "--database", str(db)).returncode == 0
        assert get(base + "/health")[0] == 200


def test_missing_database_is_unhealthy_and_not_created(app_dir: Path, db: Path) -> None:
    with running_app(app_dir, "--database", str(db)) as base:
        status, body = get(base + "/health")
    assert status == 500 and body["schema"] is None
    assert not db.exists()


def test_slow_ms_delays_every_request(served: str, app_dir: Path) -> None:
    (app_dir / "SLOW_MS").write_text("300\n")
    start = time.monotonic()
    assert get(served + "/health")[0] == 200
    assert time.monotonic() - start >= 0.3


def test_settings_come_from_config_app_ini(app_dir: Path, tmp_path: Path, db: Path) -> None:
    port = free_port()
    flags = tmp_path / "flags.json"
    flags.write_text('{"flags": {"new-checkout": {"enabled": true}}}')
    (app_dir / "config").mkdir()
    (app_dir / "config" / "app.ini").write_text(
        f"[app]\nlisten = 127.0.0.1\nport = {port}\ndatabase = {db}\nenv = staging\n"
        f"flags_file = {flags}  # shared, not in the release\n"
    )
    assert migrate(app_dir).returncode == 0  # database from app.ini too
    with running_app(app_dir, port=port) as base:
        body = get(base + "/")[1]
        assert (body["env"], body["host"]) == ("staging", "127.0.0.1")
        assert body["checkout"] == "new"
        (app_dir / "BROKEN_ON").write_text("127.0.0.1\n")
        assert get(base + "/health")[0] == 500


def test_checkout_follows_the_flags_file_without_a_restart(
    app_dir: Path, tmp_path: Path, db: Path
) -> None:
    port = free_port()
    flags = tmp_path / "shared" / "flags.json"
    flags.parent.mkdir(parents=True, exist_ok=True)
    (app_dir / "config").mkdir()
    (app_dir / "config" / "app.ini").write_text(
        f"[app]\nlisten = 127.0.0.1\nport = {port}\ndatabase = {db}\nflags_file = {flags}\n"
    )
    assert migrate(app_dir).returncode == 0

    def push(rule: dict[str, object]) -> None:  # as `invoke flags.set` does: rename a new file
        tmp = flags.with_name(".flags.json.tmp")
        tmp.write_text(json.dumps({"format": 1, "env": "test", "flags": {"new-checkout": rule}}))
        os.replace(tmp, flags)

    with running_app(app_dir, port=port) as base:
        first = get(base + "/?user=alice")[1]
        assert first["checkout"] == "old" and first["user"] == "alice"  # no file yet: off
        push({"enabled": True, "percent": 0, "allow": ["alice"]})
        assert get(base + "/?user=alice")[1]["checkout"] == "new"
        assert get(base + "/?user=bob")[1]["checkout"] == "old"
        assert get(base + "/")[1]["checkout"] == "old"  # no user, 0%: off
        push({"enabled": False, "percent": 100, "allow": ["alice"]})
        last = get(base + "/?user=alice")[1]
        assert last["checkout"] == "old" and last["pid"] == first["pid"]


def test_bad_config_is_reported(app_dir: Path) -> None:
    (app_dir / "config").mkdir()
    (app_dir / "config" / "app.ini").write_text("[app]\nport = 80\ndatabase = rel.db\ncolour = 1\n")
    proc = subprocess.run(
        [sys.executable, "-B", str(app_dir / "app.py")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "unknown keys: colour" in proc.stderr


def test_app_never_writes_inside_its_release(served: str, app_dir: Path) -> None:
    before = sorted(p.relative_to(app_dir) for p in app_dir.rglob("*"))
    get(served + "/")
    get(served + "/health")
    assert sorted(p.relative_to(app_dir) for p in app_dir.rglob("*")) == before


# -------------------------------------------------------------------------- migrations


def applied(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_migrations_are_idempotent(app_dir: Path, db: Path) -> None:
    first = migrate(app_dir, "--database", str(db))
    assert first.returncode == 0, first.stderr
    assert "applied 001_create_visits" in first.stdout
    assert "applied 002_add_visitor_column" in first.stdout
    second = migrate(app_dir, "--database", str(db))
    assert second.returncode == 0
    assert "applied" not in second.stdout and "nothing to apply" in second.stdout
    assert applied(db) == [1, 2]
    assert not list(app_dir.rglob("__pycache__")), "migrate.py wrote inside the release"


def test_new_migration_applies_alone(app_dir: Path, db: Path) -> None:
    migrate(app_dir, "--database", str(db))
    (app_dir / "migrations" / "003_add_referrer.sql").write_text(
        "ALTER TABLE visits ADD COLUMN referrer TEXT; -- two statements\n"
        "CREATE INDEX visits_by_referrer ON visits (referrer);\n"
    )
    result = migrate(app_dir, "--database", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("applied") == 1 and "applied 003_add_referrer" in result.stdout
    assert applied(db) == [1, 2, 3]


def test_failed_migration_exits_nonzero_and_rolls_back(app_dir: Path, db: Path) -> None:
    migrate(app_dir, "--database", str(db))
    (app_dir / "migrations" / "003_broken.sql").write_text(
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    result = migrate(app_dir, "--database", str(db))
    assert result.returncode == 1
    assert "003_broken.sql" in result.stderr and "no such table: no_such_table" in result.stderr
    assert applied(db) == [1, 2]
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables


def test_misnamed_migration_is_an_error(app_dir: Path, db: Path) -> None:
    (app_dir / "migrations" / "3_oops.sql").write_text("SELECT 1;\n")
    result = migrate(app_dir, "--database", str(db))
    assert result.returncode == 1 and "NNN_name.sql" in result.stderr


# ------------------------------------------------------------------------ bin/restart


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stop(pid: int) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.05)


@pytest.fixture
def deployed(app_dir: Path, tmp_path: Path, db: Path) -> Iterator[tuple[Path, Path, str]]:
    """The app copy with an app.ini naming its own port, database, pidfile and logfile."""
    port = free_port()
    shared = tmp_path / "shared"
    (app_dir / "config").mkdir()
    (app_dir / "config" / "app.ini").write_text(
        f"[app]\nlisten = 127.0.0.1\nport = {port}\ndatabase = {db}\nenv = test\n"
        f"pidfile = {shared}/run/app.pid\nlogfile = {shared}/log/app.log\n"
    )
    assert migrate(app_dir).returncode == 0
    pidfile = shared / "run" / "app.pid"
    yield app_dir, pidfile, f"http://127.0.0.1:{port}"
    if pidfile.exists():
        _stop(int(pidfile.read_text()))


def restart(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "STOP_TIMEOUT": "5"}
    cmd = [str(app_dir / "bin" / "restart"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_restart_starts_then_replaces_the_app(deployed: tuple[Path, Path, str]) -> None:
    app_dir, pidfile, base = deployed
    first = restart(app_dir)
    assert first.returncode == 0, first.stderr
    pid1 = int(pidfile.read_text())
    wait_until_serving(base + "/health")
    assert get(base + "/health")[0] == 200

    second = restart(app_dir)
    assert second.returncode == 0, second.stderr
    pid2 = int(pidfile.read_text())
    assert pid2 != pid1 and not _alive(pid1)
    wait_until_serving(base + "/health")
    assert get(base + "/health")[0] == 200
    log = (pidfile.parent.parent / "log" / "app.log").read_text()
    assert log.count("listening on 127.0.0.1") == 2


def test_restart_with_a_stale_pidfile(deployed: tuple[Path, Path, str]) -> None:
    app_dir, pidfile, base = deployed
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text("999999999\n")
    result = restart(app_dir)
    assert result.returncode == 0, result.stderr
    wait_until_serving(base + "/health")


def test_restart_fails_when_the_app_dies_at_once(deployed: tuple[Path, Path, str]) -> None:
    app_dir, pidfile, base = deployed
    port = int(base.rsplit(":", 1)[1])
    with socket.socket() as taken:  # the port is busy: the new app cannot bind
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = restart(app_dir)
    assert result.returncode == 1
    assert "exited while starting" in result.stderr and "Address already in use" in result.stderr
    assert not pidfile.exists()


def test_restart_with_shared_dir_argument(deployed: tuple[Path, Path, str], tmp_path: Path) -> None:
    app_dir, _, base = deployed
    other = tmp_path / "other-shared"
    result = restart(app_dir, str(other))
    try:
        assert result.returncode == 0, result.stderr
        assert (other / "run" / "app.pid").exists() and (other / "log" / "app.log").exists()
        wait_until_serving(base + "/health")
    finally:
        _stop(int((other / "run" / "app.pid").read_text()))


def refuses_connections(port: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.02)
    return False


def test_sigterm_finishes_requests_in_flight_and_stops_accepting(app_dir: Path, db: Path) -> None:
    """A restart must not cut off a request being served: the load balancer in front could
    retry only requests that never reached the app."""
    assert migrate(app_dir, "--database", str(db)).returncode == 0
    port = free_port()
    cmd = [sys.executable, str(app_dir / "app.py"), "--database", str(db)]
    proc = subprocess.Popen(
        [*cmd, "--listen", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/health")
        (app_dir / "SLOW_MS").write_text("800\n")
        answers: list[int] = []
        slow = threading.Thread(target=lambda: answers.append(get(base + "/health")[0]))
        slow.start()
        started = app_dir / "SLOW_STARTED"  # the app's own signal: the request is in, sleeping
        end = time.monotonic() + 5
        while not started.exists():
            assert time.monotonic() < end, "the slow request never reached the app"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        # No new connections once stopping, while the slow request is still being served.
        assert refuses_connections(port, within=0.4)
        assert slow.is_alive()
        slow.join(timeout=10)
        assert answers == [200]
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------ POST /orders


def post(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


def test_order_is_stored_and_answered_with_its_digest(served: str, db: Path) -> None:
    import hashlib

    payload = b'{"sku": "tea", "qty": 3}'
    status, body = post(served + "/orders", payload)
    assert status == 200
    assert body["sha256"] == hashlib.sha256(payload).hexdigest() and body["bytes"] == len(payload)
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT path FROM visits WHERE rowid = ?", (body["order"],)).fetchone()
    assert row == (f"/orders/{body['sha256']}",)


def test_slow_order_is_in_flight_for_its_whole_duration(served: str) -> None:
    started = time.monotonic()
    status, body = post(served + "/orders?ms=600", b"slow")
    assert status == 200 and body["bytes"] == 4
    assert time.monotonic() - started >= 0.6


# ------------------------------------------------------------------------------ metrics


def test_metrics_count_requests_by_path_and_status_in_the_exposition_format(
    app_dir: Path, db: Path
) -> None:
    """Written by the vendored prometheus_client, parsed back here by the same library."""
    sys.path.insert(0, str(app_dir / "third_party"))
    try:
        from prometheus_client.parser import text_string_to_metric_families
    finally:
        sys.path.pop(0)
    (app_dir / "ERROR_PATHS").write_text("/api/cart\n")
    migrate(app_dir, "--database", str(db))
    with running_app(app_dir, "--database", str(db)) as base:
        for path in ("/", "/api/items", "/api/cart", "/api/cart", "/health"):
            get(base + path)
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            text = resp.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def count(path: str, status: str) -> float:
        labels = (("method", "GET"), ("path", path), ("status", status))
        return samples.get(("http_requests_total", labels), 0.0)

    assert count("/", "200") == 1 and count("/api/items", "200") == 1
    assert count("/api/cart", "500") == 2 and count("/health", "200") >= 1  # + the start wait
    assert count("/metrics", "200") == 0  # scrapes are not traffic
    otel = (
        ("http_request_method", "GET"),
        ("http_response_status_code", "500"),
        ("http_route", "/api/cart"),
    )
    assert samples[("http_server_request_duration_seconds_count", otel)] == 2
