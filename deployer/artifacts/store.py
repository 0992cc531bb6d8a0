"""Putting a release archive into S3-compatible storage once and presigning short-lived GET
URLs for the hosts, with boto3 (the optional `[s3]` extra): one per object, shared by the
hosts while at least half its life is left. Runs only on this machine: no credential, and no
client, ever reaches a host; they get a presigned URL on stdin."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.artifacts.fetch import Fetch
from deployer.config.model import ArtifactStore
from deployer.errors import ConfigError, DeployerError
from deployer.secrets import Secret

__all__ = ["ArtifactStoreError", "Published", "S3Store", "open_store"]


class ArtifactStoreError(DeployerError):
    """The store refused an upload or could not be reached; nothing was staged."""


@dataclass(frozen=True)
class Published:
    """One archive in the store: its key, size and what the upload cost."""

    key: str
    size: int
    sha256: str
    seconds: float


class S3Store:
    """An S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph RGW) reached with boto3."""

    def __init__(
        self, settings: ArtifactStore, client: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()  # boto3 clients are thread-safe; these counts are not
        self.uploaded_bytes = 0
        self._urls: dict[str, tuple[float, Fetch]] = {}  # key -> (signed at, its download)

    def key(self, application: str, sha256: str) -> str:
        """Content-addressed: the same archive (they are reproducible) is the same object."""
        return f"{self.settings.prefix}{application}/{sha256}.tar.gz"

    def location(self, key: str) -> str:
        return f"s3://{self.settings.bucket}/{key}"

    def put(self, archive: Path, key: str, sha256: str) -> Published:
        """Upload `archive` under `key` (multipart when large). Its sha256 goes along as
        metadata for people looking at the bucket; hosts check the checksum themselves."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        size = archive.stat().st_size
        started = time.monotonic()
        try:
            self._client.upload_file(
                str(archive),
                self.settings.bucket,
                key,
                ExtraArgs={"ContentType": "application/gzip", "Metadata": {"sha256": sha256}},
                Config=TransferConfig(multipart_threshold=64 * 1024 * 1024),
            )
        except (BotoCoreError, ClientError) as exc:
            raise ArtifactStoreError(
                f"uploading the release archive to {self.location(key)} failed: {exc}",
                hint=_hint(exc),
            ) from None
        with self._lock:
            self.uploaded_bytes += size
        return Published(key, size, sha256, time.monotonic() - started)

    def fetch(self, key: str) -> Fetch:
        """A host's download of `key`: a presigned GET URL valid `url_ttl` seconds from its
        signing, registered as a secret so that no output, record or webhook shows it.

        Hosts fetch the same object, so they share one URL while at least half of `url_ttl`
        is left (every host gets one with that much life ahead); after that a new one is
        signed. At 40 hosts that is one signature instead of 40, and one secret to mask."""
        with self._lock:  # held while signing: hosts arriving together share the signature
            now = self._clock()
            signed = self._urls.get(key)
            if signed is not None and now - signed[0] < self.settings.url_ttl / 2:
                return signed[1]
            url = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.settings.bucket, "Key": key},
                ExpiresIn=max(1, math.ceil(self.settings.url_ttl)),
            )
            secret = Secret(url)
            if "?" in url:
                Secret(url.split("?", 1)[1])  # the signed query alone is masked too
            fetch = Fetch(url=secret, tool=self.settings.fetch_with, where=self.location(key))
            self._urls[key] = (now, fetch)
            return fetch


def open_store(settings: ArtifactStore) -> S3Store:
    """A client for `settings` (store: s3). Credentials: the variables the playbook names,
    else boto3's own chain (AWS_* variables, `profile`, ~/.aws, an instance role)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError(
            "artifacts: store: s3 needs boto3 on this machine",
            file=settings.where.file if settings.where else None,
            line=settings.where.line if settings.where else None,
            key_path="artifacts.store",
            hint="pip install 'shipfleet[s3]'",
        ) from None
    keys: dict[str, str] = {}
    for name, arg in (
        (settings.access_key_id_env, "aws_access_key_id"),
        (settings.secret_access_key_env, "aws_secret_access_key"),
        (settings.session_token_env, "aws_session_token"),
    ):
        if name is None:
            continue
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"artifacts: environment variable {name} is not set",
                key_path="artifacts",
                hint=f"export {name}, or in CI map it from the secret store",
            )
        if arg != "aws_access_key_id":
            Secret(value)  # masked wherever it could show
        keys[arg] = value
    session = boto3.session.Session(profile_name=settings.profile)
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing},
        retries={"max_attempts": 5, "mode": "standard"},
    )
    client = session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=config,
        **keys,
    )
    return S3Store(settings, client)


def _hint(exc: Exception) -> str:
    text = str(exc)
    if "credentials" in text.lower():
        return (
            "give this machine credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile,"
            " or artifacts.access_key_id_env/secret_access_key_env"
        )
    if "NoSuchBucket" in text:
        return "create the bucket, or fix artifacts.bucket"
    return "check artifacts.endpoint_url, bucket and the credentials' permissions (s3:PutObject)"
