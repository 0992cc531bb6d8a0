"""The benchmark's app server: GET /health answers {"status": "ok", "version": <release id>}.

The release id is the name of the directory this file was unpacked into (releases/<id>/), so
every tool's release reports itself without any tool-specific file. Never writes inside the
release (releases may be read-only): the pidfile lives in shared/run/.
"""

import configparser
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.realpath(__file__))
VERSION = os.path.basename(HERE)


class Handler(BaseHTTPRequestHandler):
    server_version = "benchapp"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] == "/health":
            status, body = 200, {"status": "ok", "version": VERSION}
        else:
            status, body = 404, {"error": "not found", "version": VERSION}
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True  # the restarted app binds while old sockets sit in TIME_WAIT
    daemon_threads = True


def main() -> None:
    config = configparser.ConfigParser()
    config.read(os.path.join(HERE, "config", "app.ini"))
    app = config["app"]
    server = Server((app["listen"], int(app["port"])), Handler)
    # Written once the port is bound: bin/restart waits for it.
    pidfile = app["pidfile"]
    tmp = f"{pidfile}.{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, pidfile)
    server.serve_forever()


if __name__ == "__main__":
    main()
