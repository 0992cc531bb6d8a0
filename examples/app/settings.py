"""Settings of the sample app: `config/app.ini` next to app.py (rendered per host at deploy
time), overridden by command-line flags for local runs. Reading settings never writes anything.

    [app]
    listen = 127.0.0.23          # address to bind, also the host's name for BROKEN_ON
    port = 8000
    database = /srv/sample/shared/db/app.sqlite3   # absolute: never inside the release
    env = production
    flags_file = /srv/sample/shared/config/flags.json   # optional JSON object
    pidfile = /srv/sample/shared/run/app.pid            # optional, used by bin/restart
    logfile = /srv/sample/shared/log/app.log            # optional, used by bin/restart
"""

from __future__ import annotations

import argparse
import configparser
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = APP_DIR / "config" / "app.ini"
SECTION = "app"
KEYS = ("listen", "port", "database", "env", "flags_file", "pidfile", "logfile")


class SettingsError(Exception):
    """The configuration is unusable; the message names the file and key."""


@dataclass(frozen=True)
class Settings:
    database: Path
    listen: str = "127.0.0.1"
    port: int = 8000
    env: str = "development"
    flags_file: Path | None = None


def add_arguments(parser: argparse.ArgumentParser, *, server: bool) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="app.ini to read")
    parser.add_argument("--database", help="SQLite database file")
    if server:
        parser.add_argument("--listen", help="address to bind")
        parser.add_argument("--port", help="port to bind")
        parser.add_argument("--env", help="environment name shown by /")


def _read_ini(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    if not parser.has_section(SECTION):
        raise SettingsError(f"{path}: missing [{SECTION}] section")
    values = dict(parser.items(SECTION))
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise SettingsError(f"{path}: [{SECTION}] unknown keys: {', '.join(unknown)}")
    database = values.get("database")
    if database is not None and not Path(database).is_absolute():
        raise SettingsError(f"{path}: [{SECTION}] database must be an absolute path")
    return values


def load(args: argparse.Namespace) -> Settings:
    """Merge app.ini (when present) with the flags given on the command line."""
    values: dict[str, str] = {}
    config: Path = args.config
    if config.is_file():
        values = _read_ini(config)
    elif config != DEFAULT_CONFIG:
        raise SettingsError(f"{config}: no such config file")
    for key in ("listen", "port", "database", "env"):
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    if not values.get("database"):
        raise SettingsError(f"no database: set `database` in {config} or pass --database")
    try:
        port = int(values.get("port", "8000"))
    except ValueError:
        raise SettingsError(f"port must be a number, not {values['port']!r}") from None
    flags = values.get("flags_file")
    return Settings(
        database=Path(values["database"]),
        listen=values.get("listen", "127.0.0.1"),
        port=port,
        env=values.get("env", "development"),
        flags_file=Path(flags) if flags else None,
    )
