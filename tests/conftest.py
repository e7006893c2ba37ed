"""Shared fixtures.

Cross-backend tests are `async def` tests marked `pytest.mark.anyio`: anyio's plugin runs
each once on asyncio with uvloop (production) and once on trio. pytest-trio is used
explicitly (`pytest.mark.trio`) only where a virtual clock is wanted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from switch.config import Config, EngineConfig, ServerConfig
from switch.core import Switch, open_switch
from switch.demo import DemoSpec, create_demo
from switch.keystore import KeyStore
from switch.service import run_service

DEMO_CARDS = 128


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def engine_config() -> EngineConfig:
    return EngineConfig()


@pytest.fixture
def data_dir(tmp_path: Path, engine_config: EngineConfig) -> Path:
    """A data directory with small demo data (DEMO_CARDS cards, 16 gates, 8 POS)."""
    create_demo(tmp_path, DemoSpec(cards=DEMO_CARDS), engine_config)
    return tmp_path


@pytest.fixture
def keys(data_dir: Path) -> KeyStore:
    return KeyStore.load(data_dir)


# Monday 2026-11-30 10:00 in Shiyan (UTC+8): a weekday, off-peak.
T0_MS = 1_796_004_000_000


class FakeClock:
    """The switch's clock in tests: moves only when told to."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, *, ms: int = 0, seconds: float = 0, minutes: float = 0) -> None:
        self.now_ms += ms + round(seconds * 1000) + round(minutes * 60_000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Running:
    """A switch serving in the test's own event loop."""

    switch: Switch
    port: int
    metrics_port: int
    keys: KeyStore
    stop: anyio.Event
    clock: FakeClock
    host: str = "127.0.0.1"


@pytest.fixture
async def running(
    data_dir: Path, engine_config: EngineConfig, clock: FakeClock
) -> AsyncIterator[Running]:
    config = Config(engine=engine_config, server=ServerConfig(port=0, metrics_port=0))
    switch = open_switch(data_dir, config, clock)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        port, metrics_port = await group.start(run_service, switch, config, stop)
        yield Running(switch, port, metrics_port, KeyStore.load(data_dir), stop, clock)
        stop.set()
