"""Secrets on real hosts (issues 5 and 7): written only into files that are private from the
moment they exist, never on a command line or in an environment, never in any output."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deployer.sandbox import Fleet
from tests.integration.helpers import APP_ROOT, Project, assert_no_ssh_since, make_project

HOSTS = ["web1", "web2"]

# Run from <deploy_to> as deploy after staging. Reads the value from the file it was written
# to, into a pattern file, so that neither this hook's nor grep's command line holds it.
PROC_CHECK = (
    "pat=$(mktemp); sed -n 's/^DB_PASSWORD=//p' shared/.env > \"$pat\";"
    ' [ -s "$pat" ] || { echo "no DB_PASSWORD in shared/.env"; exit 3; };'
    ' hits=$(grep -lF -f "$pat" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null || true);'
    ' rm -f "$pat";'
    ' if [ -n "$hits" ]; then echo "secret visible in: $hits"; exit 1; fi;'
    " echo proc-check: clean"
)

# Run in the container for the whole deploy, every few milliseconds: every process's command
# line, and the environment of every process of deploy (the user the deployer logs in as; a
# container's root may not read other users' environ without CAP_SYS_PTRACE). The patterns
# come from files, for the same reason as above.
SAMPLER = (
    "while [ ! -e /tmp/sampler.stop ]; do "
    "grep -lF -f /tmp/secret.pat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null"
    " | sed 's/^/LEAK /'; "
    "grep -lF -f /tmp/marker.pat /proc/[0-9]*/cmdline 2>/dev/null | sed 's/^/SEEN /'; "
    "done | sort -u"
)


@pytest.fixture
def secret_value() -> str:
    return f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def token_value() -> str:
    return f"tok-{uuid.uuid4().hex}"


@pytest.fixture
def project(
    clean_fleet: Fleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    secret_value: str,
    token_value: str,
) -> Project:
    p = make_project(tmp_path / "project", clean_fleet, HOSTS)
    templates = p.root / "templates"
    (templates / "app.env.j2").write_text(
        "DB_PASSWORD={{ secrets.DB_PASSWORD }}\nAPI_TOKEN={{ secrets.API_TOKEN }}\n"
    )
    (templates / "db.ini.j2").write_text("[db]\npassword = {{ secrets.DB_PASSWORD }}\n")
    (p.root / "vault.txt").write_text(token_value + "\n")  # read by a command, in the root
    p.playbook(
        secrets={
            "DB_PASSWORD": {"env": "APP_DB_PASSWORD"},
            "API_TOKEN": {"command": "cat vault.txt"},
        },
        templates=[
            {"src": "app.ini.j2", "dest": "config/app.ini", "mode": "0644"},
            {"src": "db.ini.j2", "dest": "config/db.ini", "mode": "0640"},
            {"src": "app.env.j2", "dest": ".env", "shared": True, "mode": "0600"},
        ],
        hooks={"after_stage": PROC_CHECK},
        strategy={"serial": [1]},
    )
    monkeypatch.setenv("APP_DB_PASSWORD", secret_value)
    return p


@contextmanager
def sampling(fleet: Fleet, host: str, value: str, marker: str) -> Iterator[list[str]]:
    """Watch every process's cmdline and environ on `host` while the block runs; yields the
    list that holds, afterwards, `LEAK <file>` and `SEEN <file>` lines."""
    fleet.exec(host, "rm -f /tmp/sampler.stop /tmp/secret.pat /tmp/marker.pat")
    for name, text in (("secret.pat", value), ("marker.pat", marker)):
        encoded = base64.b64encode(text.encode()).decode()  # the value itself never on argv
        fleet.exec(host, f"umask 077; echo {encoded} | base64 -d > /tmp/{name}", user="deploy")
    found: list[str] = []

    def sample() -> None:
        found.extend(fleet.exec(host, SAMPLER, user="deploy")[1].splitlines())

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield found
    finally:
        fleet.exec(host, "touch /tmp/sampler.stop")
        thread.join(timeout=60)


def assert_nowhere(value: str, *texts: str) -> None:
    for text in texts:
        assert value not in text, text


def test_secret_reaches_a_private_shared_file_and_nothing_else(
    project: Project, secret_value: str, token_value: str
) -> None:
    # The stage script's own text is the marker: proof the sampler saw the session running.
    with sampling(project.fleet, "web1", secret_value, "@@step templates") as seen:
        done = project.invoke("deploy", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_nowhere(secret_value, done.stdout, done.stderr)
    assert_nowhere(token_value, done.stdout, done.stderr)
    assert not [line for line in seen if line.startswith("LEAK")], seen
    assert [line for line in seen if line.startswith("SEEN")], "the sampler never saw stage run"

    for host in HOSTS:
        env = f"{APP_ROOT}/shared/.env"
        assert project.sh(host, f"stat -c '%a %U' {env}").strip() == "600 deploy"
        assert project.sh(host, f"cat {env}") == (
            f"DB_PASSWORD={secret_value}\nAPI_TOKEN={token_value}\n"
        )
        assert project.sh(host, f"readlink {APP_ROOT}/current/.env").strip() == env
        # Release templates: the one with a secret stays private to deploy's group, the
        # other is widened as asked (both then made read-only with the release).
        config = f"{APP_ROOT}/current/config"
        assert project.sh(host, f"stat -c %a {config}/db.ini {config}/app.ini").split() == [
            "440",
            "444",
        ]
        assert secret_value in project.sh(host, f"cat {config}/db.ini")
        # Nothing left behind in shared/ from the write-then-rename.
        assert project.sh(host, f"ls -A {APP_ROOT}/shared").split() == [".env", "log", "run"]

    # The hook ran on every host and found the value in no process.
    as_json = project.invoke("deploy", "--env", "test", "--format", "json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    assert as_json.stdout.count("proc-check: clean") == len(HOSTS)
    verbose = project.invoke("deploy", "--env", "test", "--verbose")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "(umask 077 && head -c" in verbose.stdout  # the scripts were shown
    dry = project.invoke("deploy", "--env", "test", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "template: shared/.env mode 0600" in dry.stdout
    records = "".join(p.read_text() for p in (project.root / ".deploy-runs").glob("*.json"))
    for value in (secret_value, token_value):
        assert_nowhere(value, as_json.stdout, as_json.stderr, verbose.stdout, verbose.stderr)
        assert_nowhere(value, dry.stdout, dry.stderr, records)


def test_a_failing_command_that_prints_the_secret_shows_it_masked(
    project: Project, secret_value: str
) -> None:
    project.playbook(hooks={"after_stage": "cat shared/.env; exit 1"})
    failed = project.invoke("deploy", "--env", "test")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "DB_PASSWORD=***" in failed.stderr
    assert_nowhere(secret_value, failed.stdout, failed.stderr)
    records = "".join(p.read_text() for p in (project.root / ".deploy-runs").glob("*.json"))
    assert "DB_PASSWORD=***" in records
    assert_nowhere(secret_value, records)


def test_secret_in_a_command_is_refused_before_connecting(project: Project) -> None:
    project.playbook(restart="./bin/restart --db-password {{ secrets.DB_PASSWORD }}")
    since = time.time()
    refused = project.invoke("deploy", "--env", "test")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "restart: secrets cannot be used in commands" in refused.stderr
    assert project.releases("web1") == []  # nothing staged ...
    assert_no_ssh_since(project.fleet, since)  # ... and nothing connected


def test_missing_secret_fails_with_the_variable_and_a_ci_hint(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APP_DB_PASSWORD")
    missing = project.invoke("deploy", "--env", "test")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "secrets.DB_PASSWORD: secret 'DB_PASSWORD': environment variable APP_DB_PASSWORD" in (
        missing.stderr
    )
    assert "export APP_DB_PASSWORD, or in CI map it from the secret store" in missing.stderr
