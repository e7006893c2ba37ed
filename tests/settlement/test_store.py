"""The settlement store, embedded and PostgreSQL (a throwaway database on the real server):
the same behaviour from both. asyncio only: asyncpg runs on nothing else."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import msgspec
import pytest

from settlement.cycle import SettledCycle, settle_cycle
from settlement.errors import SettlementStoreError
from settlement.files import render_bank_file, settlement_file_name
from settlement.layout import RETURN_KIND
from settlement.postgres import PostgresStore, migrate, migrations
from settlement.reconcile import reconcile
from settlement.store import EmbeddedStore, SettlementStore
from tests.settlement.harness import Day, busy_day, settlement_config

pytestmark = pytest.mark.anyio
# The server's maintenance database: throwaway databases are created from it.
POSTGRES_SERVER = os.environ.get(
    "ONECARD_TEST_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONFIG = settlement_config()


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A dsn of a new database on the real server; dropped afterwards."""
    name = f"onecard_settle_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_SERVER)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield POSTGRES_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture(params=["embedded", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SettlementStore]:
    if request.param == "embedded":
        yield EmbeddedStore(tmp_path, CONFIG)
        return
    async with throwaway_database() as dsn:
        opened = await PostgresStore.connect(dsn)
        try:
            yield opened
        finally:
            await opened.aclose()


def settled_day(tmp_path: Path) -> SettledCycle:
    day = Day()
    busy_day(day)
    close = day.close()
    return settle_cycle(day.write(tmp_path), CONFIG, day.keys.journal, close, None)


async def test_a_cycle_is_stored_once_and_read_back(store: SettlementStore, tmp_path: Path) -> None:
    settled = settled_day(tmp_path)
    await store.save_cycle(settled)
    await store.save_cycle(settled)  # a re-run: nothing changes
    stored = await store.cycle(1)
    assert stored is not None
    assert stored.digest == settled.digest
    assert stored.summary.positions == settled.positions.positions
    assert stored.summary.movement_fen == settled.positions.movement_fen
    assert await store.cycle(2) is None


async def test_a_cycle_stored_with_another_digest_is_refused(
    store: SettlementStore, tmp_path: Path
) -> None:
    settled = settled_day(tmp_path)
    await store.save_cycle(settled)
    other_manifest = settled.files.manifest + b"x"
    changed = msgspec.structs.replace(settled.info)  # same cycle
    different = SettledCycle(
        changed,
        settled.positions,
        type(settled.files)(settled.files.files, other_manifest),
        settled.directory,
    )
    with pytest.raises(SettlementStoreError):
        await store.save_cycle(different)


async def test_reconciliation_results_are_stored_and_replaced(
    store: SettlementStore, tmp_path: Path
) -> None:
    settled = settled_day(tmp_path)
    ours = settled.files.files[settlement_file_name("ABC", 1)]
    lines = [line for line in settled.positions.bank_lines if line.bank == "ABC"]
    partial = render_bank_file(settled.info, "ABC", lines[:1], [], 0, kind=RETURN_KIND)
    first = reconcile(ours, partial, "RETN-ABC")
    await store.save_reconciliation(first)
    assert await store.reconciliation(1, "ABC") == first
    assert len(first.exceptions) == 1
    corrected = reconcile(
        ours, render_bank_file(settled.info, "ABC", lines, [], 0, kind=RETURN_KIND), "RETN"
    )
    await store.save_reconciliation(corrected)
    assert await store.reconciliation(1, "ABC") == corrected
    assert await store.reconciliation(1, "CCB") is None


async def test_settlement_migrations_apply_once() -> None:
    async with throwaway_database() as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            assert await migrate(connection) == len(migrations())
            assert await migrate(connection) == len(migrations())
            tables = await connection.fetchval(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'settlement_%'"
            )
            assert tables == 6  # five of settlement's and its version table
        finally:
            await connection.close()
