"""Schema migrations: `migrations/NNNN_name.sql`, applied in order, each in its own
transaction together with its row in `schema_version`, so a failed migration leaves the
schema at the previous version. Applying is idempotent: versions already recorded are
skipped. An advisory lock keeps two switches starting at once from racing.

One runner serves every schema in the project: the service API's (here) and settlement's
(settlement/postgres.py), each with its own directory, version table and lock."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger("onecard.store")

MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
# pg_advisory_xact_lock key: "onecard" in ASCII, so it collides with no one else's.
LOCK_KEY = 0x6F6E6563617264


_TABLE = re.compile(r"[a-z_]+")


def migrations(directory: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"migration {path.name} is not named NNNN_name.sql")
        found.append((int(match[1]), path))
    versions = [version for version, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, ...; found {versions}")
    return found


async def migrate(
    connection: asyncpg.Connection | PoolConnectionProxy,
    directory: Path = MIGRATIONS,
    table: str = "schema_version",
    lock_key: int = LOCK_KEY,
) -> int:
    """Apply every migration in `directory` not yet recorded in `table`; returns the
    schema version."""
    if not _TABLE.fullmatch(table):
        raise ValueError(f"version table name {table!r}")
    await connection.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    version = 0
    for version, path in migrations(directory):
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
            done = await connection.fetchval(f"SELECT 1 FROM {table} WHERE version = $1", version)
            if done:
                continue
            await connection.execute(path.read_text())
            await connection.execute(f"INSERT INTO {table} (version) VALUES ($1)", version)
            log.info("%s: schema migrated to version %d (%s)", table, version, path.name)
    return version
