"""Release transfer through an artifact store: the archive leaves this machine once, to
S3-compatible storage, and every host downloads it itself through a short-lived presigned
URL into the same verify-then-unpack path as an SSH push (`remote.scripts.stage`).

    settings.py   the playbook's `artifacts:` section (no credentials read there)
    store.py      upload and presign with boto3 (the optional `[s3]` extra); never on a host
    fetch.py      the host's download command as data (curl, or python3's urllib)

Credentials never leave this machine; a presigned URL is a `Secret` (masked everywhere) and
reaches a host only on the stage session's stdin. This package must stay importable without
boto3: only `store.open_store` imports it.
"""
