"""PostgreSQL specifics on the real server: migrations, the projector's restart from its
committed position, holders sealed in their table. asyncio only (asyncpg)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from protocols.codes import ResponseCode as C
from switch.store.config import StoreConfig
from switch.store.migrate import migrate, migrations
from switch.store.postgres import PostgresStore
from switch.store.tail import JournalTail
from tests.api.harness import desk_config, postgres_schema, running_desk
from tests.api.test_privacy import demo_holders
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


async def test_migrations_apply_once_in_order() -> None:
    async with postgres_schema() as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            assert await migrate(connection) == len(migrations())
            assert await migrate(connection) == len(migrations())  # nothing twice
            versions = await connection.fetch("SELECT version FROM schema_version ORDER BY 1")
            assert [row["version"] for row in versions] == list(range(1, len(migrations()) + 1))
        finally:
            await connection.close()


async def test_projector_resumes_from_its_committed_position(
    data_dir: Path, clock: FakeClock
) -> None:
    async with postgres_schema() as dsn:
        config = desk_config(StoreConfig(dsn=dsn, projection_batch_records=50))
        async with running_desk(data_dir, clock, config) as desk:
            assert await desk.tap("G0001", "X00000050") == C.APPROVED
            await desk.call("POST", "/cards/X00000050/loss", {"kind": "formal"})
            operations = desk.api.operations
            assert operations is not None
            await operations.current()
            end = desk.switch.journal.durable_position
        store = await PostgresStore.connect(StoreConfig(dsn=dsn), data_dir / "journal")
        try:
            assert store.projected == end  # committed with the rows it covers
            tail = JournalTail(data_dir / "journal")
            assert await store.project_once(tail, end) == 0  # nothing again
            connection = await asyncpg.connect(dsn)
            try:
                count = await connection.fetchval("SELECT count(*) FROM journal")
                assert count == end
                indexes = await connection.fetchval("SELECT count(DISTINCT idx) FROM journal")
                assert indexes == end
                status = await connection.fetchval(
                    "SELECT status FROM cards WHERE card = 'X00000050'"
                )
                assert status == "lost"
                sealed = b"".join(
                    row["sealed"] for row in await connection.fetch("SELECT sealed FROM holders")
                )
                for person in demo_holders().values():
                    assert person.citizen_id.encode() not in sealed
                    assert person.name.encode() not in sealed
            finally:
                await connection.close()
        finally:
            await store.aclose()
