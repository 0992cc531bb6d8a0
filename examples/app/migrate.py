"""Apply `migrations/NNN_name.sql` to the app's SQLite database, in order, one transaction each.

Applied versions are recorded in `schema_migrations`, so running it again does nothing. Every
run, applying something or not, adds a row to `migration_runs` naming the host (its listen
address): the witness that a deploy ran its migration exactly once, and where.
Exits 1 with the SQL error when a migration fails (that migration is rolled back entirely).
Usage: python3 migrate.py [--config config/app.ini] [--database PATH]
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # releases are read-only: never write __pycache__ there

import settings  # noqa: E402

MIGRATIONS_DIR = settings.APP_DIR / "migrations"
MIGRATION_RE = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")


class MigrationError(Exception):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """Every migration file, by version. A misnamed .sql file is an error, not skipped."""
    found: dict[int, Path] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_RE.fullmatch(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} also used by {found[version].name}"
            )
        found[version] = path
    return sorted(found.items())


def current_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration, 0 for a database never migrated."""
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0] or 0)


def split_statements(sql: str) -> list[str]:
    """Split a script into statements (sqlite3 knows where strings, comments and triggers end)."""
    statements: list[str] = []
    buf = ""
    for piece in re.split(r"(?<=;)", sql):
        buf += piece
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())  # unterminated: let SQLite report it
    return statements


def connect(database: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are begun and ended explicitly below.
    return sqlite3.connect(database, timeout=30, isolation_level=None)


def migrate(database: Path, directory: Path = MIGRATIONS_DIR, host: str = "") -> list[str]:
    """Apply every pending migration; return the names applied. The run is recorded in
    `migration_runs` with `host`."""
    migrations = discover(directory)
    database.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(database)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        applied: list[str] = []
        for version, path in migrations:
            statements = split_statements(path.read_text(encoding="utf-8"))
            conn.execute("BEGIN IMMEDIATE")  # one migrator at a time
            try:
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                ).fetchone()
                if done:
                    conn.execute("ROLLBACK")
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, path.stem, time.time()),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise MigrationError(f"{path.name}: {exc}") from exc
            applied.append(path.stem)
            print(f"applied {path.stem}", flush=True)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migration_runs ("
            " host TEXT NOT NULL, ran_at REAL NOT NULL, applied INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO migration_runs (host, ran_at, applied) VALUES (?, ?, ?)",
            (host, time.time(), len(applied)),
        )
        return applied
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings.add_arguments(parser, server=False)
    args = parser.parse_args(argv)
    try:
        loaded = settings.load(args)
        database = loaded.database
        applied = migrate(database, host=loaded.listen)
    except settings.SettingsError as exc:
        print(f"migrate: config error: {exc}", file=sys.stderr)
        return 2
    except MigrationError as exc:
        print(f"migrate: FAILED {exc}", file=sys.stderr)
        return 1
    conn = connect(database)
    try:
        version = current_version(conn)
    finally:
        conn.close()
    if applied:
        print(f"{database}: schema version now {version}")
    else:
        print(f"{database}: schema version {version}, nothing to apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
