"""The benchmark's S3 stand-in: the tests' moto server (tests/integration/s3store.py) with a
count of the request bytes it has read, so the bytes the deploying machine sends to the store
are counted by the store itself. Sampling TCP sockets from outside misses an upload that opens,
sends the whole archive and closes between two samples (seen on a loaded machine: 0.14 MB of a
7.1 MB upload counted).

    python -m benchmarks.store_server ADDRESS PORT
    GET http://ADDRESS:PORT/__benchmark__/received -> request body bytes read so far

Bodies of every client are counted: the deploying machine's uploads, and the hosts' download
requests (bodiless GETs: nothing). Headers are not counted.
"""

from __future__ import annotations

import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

COUNTER_PATH = "/__benchmark__/received"


class _Counted:
    """A WSGI input stream that adds what is read from it to a shared total."""

    def __init__(self, stream: Any, add: Callable[[int], None]) -> None:
        self._stream, self._add = stream, add

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self._add(len(data))
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self._add(len(data))
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        self._add(sum(len(line) for line in lines))
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._add(len(line))
            yield line


def counting(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    total = [0]
    lock = threading.Lock()

    def add(n: int) -> None:
        with lock:
            total[0] += n

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTER_PATH:
            body = str(total[0]).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        environ["wsgi.input"] = _Counted(environ["wsgi.input"], add)
        return app(environ, start_response)

    return wrapped


def received(address: str, port: int) -> int:
    """Request body bytes the store has read since it started."""
    with urllib.request.urlopen(f"http://{address}:{port}{COUNTER_PATH}", timeout=30) as resp:
        return int(resp.read())


def main(address: str, port: int) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from tests.integration.s3store import expiring

    app = counting(expiring(DomainDispatcherApplication(create_backend_app)))
    server = make_server(address, port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"listening on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
