"""The playbook's `artifacts:` section, validated at load into an `ArtifactStore`. Reads no
credential: only the names of the variables that hold them."""

from __future__ import annotations

import re
from typing import Literal, cast

from deployer.config.model import ArtifactStore
from deployer.config.yamlfile import Node

KEYS = (
    "store",
    "bucket",
    "prefix",
    "endpoint_url",
    "region",
    "addressing",
    "url_ttl",
    "profile",
    "access_key_id_env",
    "secret_access_key_env",
    "session_token_env",
    "fetch_with",
)
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_TTL = 7 * 24 * 3600.0  # SigV4's limit for a presigned URL


def parse_artifacts(node: Node) -> ArtifactStore:
    """`artifacts: {store: s3, bucket: NAME, prefix: deploys/, endpoint_url: ..., url_ttl: 300}`;
    `store: ssh` (the default) takes no other key."""
    fields = {k: v for k, v in node.mapping(KEYS).items() if not v.is_null}
    store = fields["store"].choice(("ssh", "s3")) if "store" in fields else "ssh"
    if store == "ssh":
        extra = sorted(set(fields) - {"store"})
        if extra:
            raise fields[extra[0]].error(
                "only used with store: s3", hint="set store: s3, or remove this key"
            )
        return ArtifactStore(where=node.location())
    if "bucket" not in fields:
        raise node.error("missing required key 'bucket' (store: s3)")
    bucket = fields["bucket"].text()
    if not _BUCKET.fullmatch(bucket):
        raise fields["bucket"].error(f"not a valid bucket name: {bucket!r}")
    prefix = fields["prefix"].text() if "prefix" in fields else ""
    if prefix.startswith("/"):
        raise fields["prefix"].error("a key prefix does not start with '/'")
    endpoint = fields["endpoint_url"].text() if "endpoint_url" in fields else None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise fields["endpoint_url"].error(f"expected an http:// or https:// URL, got {endpoint!r}")
    envs: dict[str, str | None] = {}
    for key in ("access_key_id_env", "secret_access_key_env", "session_token_env"):
        child = fields.get(key)
        envs[key] = None
        if child is not None:
            name = child.text()
            if not _ENV_VAR.fullmatch(name):
                raise child.error(
                    f"expected an environment variable name, got {name!r}",
                    hint="the key itself is a secret: put it in that variable, not here",
                )
            envs[key] = name
    if (envs["access_key_id_env"] is None) != (envs["secret_access_key_env"] is None):
        raise node.error("access_key_id_env and secret_access_key_env go together")
    defaults = ArtifactStore()
    ttl = fields.get("url_ttl")
    addressing, fetch_with = fields.get("addressing"), fields.get("fetch_with")
    return ArtifactStore(
        store="s3",
        bucket=bucket,
        prefix=prefix if not prefix or prefix.endswith("/") else prefix + "/",
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        region=fields["region"].text() if "region" in fields else None,
        addressing=cast(
            Literal["auto", "path", "virtual"],
            addressing.choice(("auto", "path", "virtual")) if addressing else "auto",
        ),
        url_ttl=ttl.number(maximum=MAX_TTL, positive=True) if ttl else defaults.url_ttl,
        profile=fields["profile"].text() if "profile" in fields else None,
        access_key_id_env=envs["access_key_id_env"],
        secret_access_key_env=envs["secret_access_key_env"],
        session_token_env=envs["session_token_env"],
        fetch_with=cast(
            Literal["auto", "curl", "python3"],
            fetch_with.choice(("auto", "curl", "python3")) if fetch_with else "auto",
        ),
        where=node.location(),
    )
