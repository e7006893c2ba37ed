"""Fixtures of the service API tests: `desk` on uvloop and trio with the embedded store;
`store_desk` with each store — embedded (both loops) and PostgreSQL (asyncio only: asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switch.store.config import StoreConfig
from tests.api.harness import Desk, desk_config, postgres_schema, running_desk
from tests.conftest import FakeClock


@pytest.fixture
async def desk(data_dir: Path, clock: FakeClock) -> AsyncIterator[Desk]:
    async with running_desk(data_dir, clock, desk_config()) as running:
        yield running


@pytest.fixture(params=["embedded", "postgres"])
def store_kind(request: pytest.FixtureRequest, anyio_backend: Any) -> str:
    kind: str = request.param
    if kind == "postgres" and anyio_backend[0] != "asyncio":
        pytest.skip("asyncpg runs on asyncio only (the service falls back to embedded on trio)")
    return kind


@pytest.fixture
async def store_desk(data_dir: Path, clock: FakeClock, store_kind: str) -> AsyncIterator[Desk]:
    if store_kind == "embedded":
        async with running_desk(data_dir, clock, desk_config()) as running:
            yield running
        return
    async with (
        postgres_schema() as dsn,
        running_desk(
            data_dir, clock, desk_config(StoreConfig(dsn=dsn, projection_wait_s=10))
        ) as running,
    ):
        yield running
