"""gunicorn's settings for the benchmark app: two workers on the host's address and port from
config/app.ini, daemonised, pidfile and log in shared/ (never inside the release)."""

import configparser
import os

_release = os.path.dirname(os.path.realpath(__file__))
_config = configparser.ConfigParser()
_config.read(os.path.join(_release, "config", "app.ini"))
_app = _config["app"]

bind = f"{_app['listen']}:{_app['port']}"
workers = 2
pidfile = _app["pidfile"]
daemon = True
chdir = _release
errorlog = os.path.join(_release, "log", "gunicorn.log")
accesslog = None
graceful_timeout = 5
