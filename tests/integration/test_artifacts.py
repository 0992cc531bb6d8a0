"""Fetch from an artifact store (issue 18): the release archive goes to S3-compatible storage
once and every host downloads it itself through a presigned URL, into the same
verify-then-unpack path as an SSH push. The store is moto's standalone server on a loopback
address of this worker's block (tests/integration/s3store.py): it stands in for AWS S3,
MinIO, Cloudflare R2 or Ceph, which the hosts would reach the same way."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from deployer import api  # noqa: E402
from deployer.errors import DeployFailed  # noqa: E402
from deployer.events import Event, Notice, StepStarted, UploadProgress  # noqa: E402
from deployer.sandbox import Fleet  # noqa: E402
from tests.integration.helpers import APP_ROOT, HOSTS, REPO, Project, make_project  # noqa: E402

BUCKET = "releases"
PORT = 9000
KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint(address_block: list[str]) -> Iterator[str]:
    """moto's server on this worker's sixth address (hosts use the first five): the hosts,
    on host networking, reach it there as they would reach a real store."""
    address = address_block[5]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.s3store", address, str(PORT)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((address, PORT), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the S3 stand-in did not start on {address}:{PORT}")
            time.sleep(0.2)
    try:
        yield f"http://{address}:{PORT}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    return client


@pytest.fixture
def project(clean_fleet: Fleet, tmp_path: Path, s3_endpoint: str) -> Project:
    p = make_project(tmp_path / "project", clean_fleet)
    vendor = p.app / "vendor"
    vendor.mkdir()
    for n in range(100):  # some bulk, so the archive dwarfs what the sessions carry
        (vendor / f"mod{n:03d}.py").write_bytes(os.urandom(2000).hex().encode())
    return p


def store_settings(endpoint: str, **extra: object) -> dict[str, object]:
    return {
        "store": "s3",
        "bucket": BUCKET,
        "prefix": "deploys/",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "url_ttl": 60,
        **extra,
    }


def run(project: Project, *reporters: Any) -> tuple[dict[str, str | None], list[Event]]:
    events: list[Event] = []
    result = api.deploy(project.load(), api.Options(reporters=[events.append, *reporters]))
    assert isinstance(result, dict)
    return result, events


def no_url_anywhere(project: Project, events: list[Event]) -> None:
    """No presigned URL in any event (raw, before the reporters' masking) or run record."""
    for event in events:
        assert "X-Amz-Signature" not in repr(event), event
    for record in (project.root / ".deploy-runs").glob("*.json"):
        assert "X-Amz-Signature" not in record.read_text()


def untouched(project: Project, release: str | None) -> None:
    for host in HOSTS:
        assert project.current(host) == release
        assert project.releases(host) == ([release] if release else [])
        assert project.leftovers(host) == []
        assert not project.locked(host)


def test_deploy_and_redeploy_through_the_artifact_store(
    project: Project, s3: Any, s3_endpoint: str
) -> None:
    project.playbook(artifacts=store_settings(s3_endpoint))
    result, events = run(project)
    release = result["web1"]
    assert release is not None
    for host in HOSTS:
        assert project.current(host) == release and project.complete(host, release)
        assert project.health(host)[1]["version"] == release
    # One object in the store; the SSH sessions carried only URLs and rendered files.
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix="deploys/sample-app/")["Contents"]
    assert len(objects) == 1 and objects[0]["Size"] > 100_000
    per_host = {e.host: e.total for e in events if isinstance(e, UploadProgress)}
    # ~10 KB each: a URL and the tar of rendered templates
    assert set(per_host) == set(HOSTS) and max(per_host.values()) < 12_000, per_host
    assert any(isinstance(e, Notice) and "uploaded to s3://releases/" in e.text for e in events)
    no_url_anywhere(project, events)
    record = json.loads(next((project.root / ".deploy-runs").glob("*.json")).read_text())
    assert record["artifacts"]["uploaded_bytes"] == objects[0]["Size"]

    # A redeploy sends the (small) delta archive through the store, and links the rest.
    (project.app / "vendor" / "mod007.py").write_text("changed = True\n")
    second, events = run(project)
    assert second["web1"] != release
    uploads = [e.text for e in events if isinstance(e, Notice) and "uploaded to" in e.text]
    assert len(uploads) == 1 and int(uploads[0].split()[2]) < 20_000, uploads
    for host in HOSTS:
        assert project.current(host) == second["web1"] and project.complete(host, second["web1"])
        assert project.sh(host, f"cat {APP_ROOT}/current/vendor/mod007.py") == "changed = True\n"
    no_url_anywhere(project, events)


def test_corrupted_object_in_the_store_is_refused_before_anything_goes_live(
    project: Project, s3: Any, s3_endpoint: str
) -> None:
    first, _ = run(project)  # an SSH push: the release the hosts must stay on
    project.playbook(artifacts=store_settings(s3_endpoint))
    (project.app / "VERSION_NOTE").write_text("new\n")

    def corrupt(event: Event) -> None:
        # Right after the upload, before any host has its URL: the object changes in the store.
        if isinstance(event, Notice) and "uploaded to s3://" in event.text:
            key = event.text.split(f"s3://{BUCKET}/", 1)[1].split()[0]
            body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
            body[len(body) // 2] ^= 0xFF
            s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))

    with pytest.raises(DeployFailed) as failed:
        run(project, corrupt)
    assert "checksum mismatch" in str(failed.value.failures[0])
    untouched(project, first["web1"])


def test_expired_url_gives_a_clear_error_and_changes_nothing(
    project: Project, s3: Any, s3_endpoint: str
) -> None:
    project.playbook(artifacts=store_settings(s3_endpoint, url_ttl=1))

    def slow_start(event: Event) -> None:
        # A stage session that starts late (a slow host): its one-second URL has expired.
        if isinstance(event, StepStarted) and event.step == "stage":
            time.sleep(2.2)

    events: list[Event] = []
    with pytest.raises(DeployFailed) as failed:
        api.deploy(project.load(), api.Options(reporters=[events.append, slow_start]))
    error = str(failed.value.failures[0])
    assert "step 'download'" in error, error
    assert "returned error: 403" in error and "expired URL" in error, error
    assert "checksum" not in error
    untouched(project, None)
    no_url_anywhere(project, events)
