"""What the switch remembers across a restart: journeys, ride counters, deny-list, offline
taps, idempotency windows — all rebuilt from the journal alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from protocols.terminal import OfflineTap
from switch.client import TerminalClient
from switch.config import Config, EngineConfig, ServerConfig
from switch.core import Switch, open_switch
from switch.journal.records import CardStatusChanged
from switch.keystore import KeyStore
from switch.service import run_service
from switch.transit.denylist import unpack
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(
    data_dir: Path, clock: FakeClock
) -> AsyncIterator[tuple[Switch, dict[str, TerminalClient]]]:
    """A switch on `data_dir` and one connected client per terminal used; stops on exit."""
    config = Config(engine=EngineConfig(), server=ServerConfig(port=0, metrics_port=0))
    switch = open_switch(data_dir, config, clock)
    keys = KeyStore.load(data_dir)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        port, _ = await group.start(run_service, switch, config, stop)
        clients = {
            terminal: await TerminalClient.connect(
                "127.0.0.1", port, terminal, keys.terminals[terminal], clock.now_ms
            )
            for terminal in ("MI01", "MO03", "G0001", "G0002", "P0001")
        }
        try:
            yield switch, clients
        finally:
            for client in clients.values():
                await client.stream.aclose()
            stop.set()


async def test_transit_state_survives_a_restart(data_dir: Path, clock: FakeClock) -> None:
    elderly = "X00000095"
    async with serving(data_dir, clock) as (switch, c):
        for _ in range(3):
            assert (await c["G0001"].request(c["G0001"].tap(elderly))).amount_fen == 0
            clock.advance(minutes=91)
        entry = await c["MI01"].request(c["MI01"].tap("X00000050"))
        assert entry.code == "00"
        await c["G0002"].request(c["G0002"].offline([OfflineTap(7, clock() - 1000, "X00000051")]))
        await c["G0002"].request(c["G0002"].balance("X00000051"))
        await switch.journal.wait_durable(
            switch.submit([CardStatusChanged(clock(), "X00000052", "lost", "desk")])
        )
        denylist_before = (await c["G0001"].denylist_page(0)).denylist_version
    async with serving(data_dir, clock) as (_, c):
        clock.advance(minutes=10)
        exit_ = await c["MO03"].request(c["MO03"].tap("X00000050"))
        assert (exit_.code, exit_.amount_fen) == ("00", 400)  # the journey was remembered
        # The retry of the entry, after the restart, is answered from the journal.
        again = await c["MI01"].request(c["MI01"].tap("X00000050", seq=entry.seq))
        assert again == entry
        answer = await c["G0002"].request(
            c["G0002"].offline([OfflineTap(7, clock() - 1000, "X00000051")])
        )
        assert answer.code == "00"
        balance = await c["G0002"].request(c["G0002"].balance("X00000051"))
        assert balance.balance_fen == 20_000 - 200  # the offline tap applied once only
        page = await c["G0001"].denylist_page(0)
        assert page.denylist_version == denylist_before
        assert "X00000052" in unpack(page.added)
    reopened = open_switch(data_dir, Config(), clock)
    assert reopened.engine.transit[elderly].free_rides_used == 3
    reopened.journal.close()
