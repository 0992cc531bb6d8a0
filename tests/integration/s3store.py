"""An S3-compatible server on a loopback address for the artifact-store tests: moto's
standalone server (the `moto[server]` test extra), run as its own process. It stands in for
a real store (AWS S3, MinIO, Cloudflare R2, Ceph RGW); nothing here is used in production.

moto accepts any signature and does not expire presigned URLs. Real stores refuse an expired
one with `403 AccessDenied: Request has expired`; the small WSGI layer below does the same,
from the URL's own X-Amz-Date and X-Amz-Expires, so the expiry test sees what S3 would send.

Run: python -m tests.integration.s3store ADDRESS PORT
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


def expiring(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "X-Amz-Date" in query and "X-Amz-Expires" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            age = (datetime.now(UTC) - signed).total_seconds()
            if age > int(query["X-Amz-Expires"][0]):
                start_response(
                    "403 Forbidden",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(EXPIRED)))],
                )
                return [EXPIRED]
        return app(environ, start_response)

    return wrapped


def main(address: str, port: int) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        address, port, expiring(app), threaded=True, request_handler=MotoRequestHandler
    )
    print(f"listening on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
