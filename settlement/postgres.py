"""The settlement store on PostgreSQL (asyncpg; asyncio only: on trio the scheduler uses
the embedded store and says so).

Its tables are its own migrations (settlement/migrations/NNNN_name.sql, versioned in
`settlement_schema_version`). They are kept apart from the service API's runner
(switch/store/migrate.py), whose migration directory is fixed: both share the database,
and each part of the system migrates its own tables, under its own advisory lock.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import asyncpg
import msgspec

from settlement.cycle import SettledCycle
from settlement.errors import SettlementStoreError
from settlement.files import Summary
from settlement.reconcile import ReconciliationResult, ReconException
from settlement.store import SettlementStore, StoredCycle
from switch.store.migrate import migrate as store_migrate
from switch.store.migrate import migrations as store_migrations

log = logging.getLogger("onecard.settlement")

MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
# pg_advisory_xact_lock key: "settle" in ASCII; the service API's runner uses "onecard".
LOCK_KEY = 0x736574746C65
# Connections: settling writes once a cycle and reconciliation a few times a day; two let
# a read proceed while a cycle is being written.
POOL_SIZE = 2


def migrations() -> list[tuple[int, Path]]:
    return store_migrations(MIGRATIONS)


async def migrate(connection: asyncpg.Connection) -> int:
    """Apply every settlement migration not applied yet; returns the schema version."""
    return await store_migrate(connection, MIGRATIONS, "settlement_schema_version", LOCK_KEY)


class PostgresStore(SettlementStore):
    kind = "postgresql"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str) -> PostgresStore:
        try:
            connection = await asyncpg.connect(dsn)
            try:
                await migrate(connection)
            finally:
                await connection.close()
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=POOL_SIZE)
        except (OSError, asyncpg.PostgresError) as exc:
            raise SettlementStoreError(f"settlement store: {exc}") from exc
        return cls(pool)

    async def save_cycle(self, settled: SettledCycle) -> None:
        info, positions = settled.info, settled.positions
        summary = settled.files.files["summary.json"].decode()
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                digest = await connection.fetchval(
                    "SELECT digest FROM settlement_cycles WHERE cycle = $1 FOR UPDATE",
                    info.cycle,
                )
                if digest == settled.digest:
                    return  # saved before: a re-run
                if digest is not None:
                    raise SettlementStoreError(
                        f"cycle {info.cycle} is stored with digest {digest}, not {settled.digest}"
                    )
                await connection.execute(
                    "INSERT INTO settlement_cycles (cycle, business_date, first_index,"
                    " last_index, window_start_ms, window_end_ms, closed_ms, records, financial,"
                    " movement_fen, fee_fen, digest, summary) VALUES"
                    " ($1, to_date($2, 'YYYYMMDD'), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
                    " $13::jsonb)",
                    info.cycle,
                    info.business_date,
                    info.first_index,
                    info.last_index,
                    info.window_start_ms,
                    info.window_end_ms,
                    info.closed_ms,
                    info.records,
                    positions.financial,
                    positions.movement_fen,
                    positions.fee_fen,
                    settled.digest,
                    summary,
                )
                await connection.copy_records_to_table(
                    "settlement_positions",
                    records=[
                        (
                            info.cycle,
                            p.account,
                            p.party,
                            p.role,
                            p.bank,
                            p.count,
                            p.debit_fen,
                            p.credit_fen,
                        )
                        for p in positions.positions
                    ],
                )
                await connection.copy_records_to_table(
                    "settlement_bank_nets",
                    records=[
                        (info.cycle, n.bank, n.debit_fen, n.credit_fen, n.net_fen)
                        for n in positions.bank_nets
                    ],
                )
                await connection.copy_records_to_table(
                    "settlement_payouts",
                    records=[
                        (
                            info.cycle,
                            p.payee,
                            p.role,
                            p.bank,
                            p.withheld,
                            p.gross_fen,
                            p.reversed_fen,
                            p.fee_fen,
                            p.payout_fen,
                        )
                        for p in positions.payouts
                    ],
                )
                await connection.copy_records_to_table(
                    "settlement_files",
                    records=[
                        (info.cycle, name, hashlib.sha256(data).hexdigest(), len(data))
                        for name, data in sorted(settled.files.files.items())
                    ],
                )
        except (OSError, asyncpg.PostgresError) as exc:
            raise SettlementStoreError(f"settlement store: cycle {info.cycle}: {exc}") from exc

    async def cycle(self, cycle: int) -> StoredCycle | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT digest, summary::text AS summary FROM settlement_cycles WHERE cycle = $1",
                cycle,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise SettlementStoreError(f"settlement store: {exc}") from exc
        if row is None:
            return None
        return StoredCycle(msgspec.json.decode(row["summary"], type=Summary), row["digest"])

    async def save_reconciliation(self, result: ReconciliationResult) -> None:
        """A bank may send a corrected return file: the latest run replaces the earlier."""
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    "DELETE FROM reconciliation_runs WHERE cycle = $1 AND bank = $2",
                    result.cycle,
                    result.bank,
                )
                await connection.execute(
                    "INSERT INTO reconciliation_runs (cycle, bank, ours_sha256, theirs_sha256,"
                    " matched, matched_fen) VALUES ($1, $2, $3, $4, $5, $6)",
                    result.cycle,
                    result.bank,
                    result.ours_sha256,
                    result.theirs_sha256,
                    result.matched,
                    result.matched_fen,
                )
                await connection.copy_records_to_table(
                    "reconciliation_exceptions",
                    records=[
                        (
                            result.cycle,
                            result.bank,
                            e.entry,
                            e.discrepancy,
                            e.card,
                            e.ours_fen,
                            e.theirs_fen,
                            e.ours_lines,
                            e.theirs_lines,
                        )
                        for e in result.exceptions
                    ],
                )
        except (OSError, asyncpg.PostgresError) as exc:
            raise SettlementStoreError(f"settlement store: reconciliation: {exc}") from exc

    async def reconciliation(self, cycle: int, bank: str) -> ReconciliationResult | None:
        try:
            async with self._pool.acquire() as connection:
                run = await connection.fetchrow(
                    "SELECT * FROM reconciliation_runs WHERE cycle = $1 AND bank = $2", cycle, bank
                )
                if run is None:
                    return None
                rows = await connection.fetch(
                    "SELECT * FROM reconciliation_exceptions WHERE cycle = $1 AND bank = $2"
                    " ORDER BY entry",
                    cycle,
                    bank,
                )
        except (OSError, asyncpg.PostgresError) as exc:
            raise SettlementStoreError(f"settlement store: {exc}") from exc
        return ReconciliationResult(
            cycle=cycle,
            bank=bank,
            ours_sha256=run["ours_sha256"],
            theirs_sha256=run["theirs_sha256"],
            matched=run["matched"],
            matched_fen=run["matched_fen"],
            exceptions=[
                ReconException(
                    row["discrepancy"],
                    row["entry"],
                    row["card"],
                    row["ours_fen"],
                    row["theirs_fen"],
                    list(row["ours_lines"]),
                    list(row["theirs_lines"]),
                )
                for row in rows
            ],
        )

    async def aclose(self) -> None:
        await self._pool.close()
