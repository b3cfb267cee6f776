"""The analytics store: a clickhouse-connect client on chDB or a ClickHouse server,
and the numbered, idempotent migrations that shape it.

The DSN is the only switch: ``chdb:///abs/dir`` (or ``chdb://rel/dir``, resolved
against the working directory) opens the embedded engine in this process,
``http(s)://user:password@host:8123`` a server. The same SQL runs on both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from turnout.schemas.settings import ClickHouseSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
QUERIES_DIR = Path(__file__).with_name("queries")
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def open_client(settings: ClickHouseSettings) -> Client:
    dsn = settings.dsn.get_secret_value()
    if dsn.startswith("chdb://"):
        directory = Path(dsn.removeprefix("chdb://")).expanduser()
        directory = directory if directory.is_absolute() else Path.cwd() / directory
        directory.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{directory.resolve()}")
    return clickhouse_connect.get_client(dsn=dsn)


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNN_snake_case.sql")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1..n without gaps, found {numbers}")
    return found


def migrate(client: Client, database: str, *, upto: int | None = None) -> list[str]:
    """Apply the migrations not yet recorded in ``{database}.turnout_migrations`` (those
    numbered up to ``upto``, when given: a store as an older release left it, for upgrade
    tests); return the names applied. Safe to run at every start-up and from several
    processes."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.turnout_migrations "
        "(number UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY number"
    )
    done = {row[0] for row in client.query(f"SELECT number FROM {database}.turnout_migrations FINAL").result_rows}
    applied = []
    for migration in migrations():
        if migration.number in done or (upto is not None and migration.number > upto):
            continue
        for statement in _statements(migration.sql.replace("{db}", database)):
            client.command(statement)
        client.insert(f"{database}.turnout_migrations", [[migration.number, migration.name]], column_names=["number", "name"])
        applied.append(migration.name)
    return applied


def without_comments(sql: str) -> str:
    """``sql`` without its line comments: they document a file, and may mention a ``;``
    or a parameter in braces, which must not be taken for SQL."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip()


def _statements(sql: str) -> list[str]:
    return [statement.strip() for statement in without_comments(sql).split(";") if statement.strip()]


def query_sql(name: str, database: str) -> str:
    """The SQL of ``queries/<name>.sql`` for ``database``: one place for every consumer."""
    path = QUERIES_DIR / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no analytics query named {name!r}; known: {sorted(p.stem for p in QUERIES_DIR.glob('*.sql'))}")
    return path.read_text().replace("{db}", database)
