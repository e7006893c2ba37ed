"""The trio adapter's cross-connection batch (switch/server/trio_adapter.py TrioBatch), with
real frames, a real switch and journal: reads handed in together are decided as one
engine pass, and a read that arrives while a group is being synced is decided at once."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio

from protocols.codes import ResponseCode as C
from protocols.terminal import ClientCodec, MacKey
from switch.core import Switch
from switch.keystore import KeyStore
from switch.server.trio_adapter import TrioBatch
from tests.conftest import FakeClock
from tests.journal.test_journal import GatedFdatasync
from tests.switch.test_loop_batch import CountingPasses, gated_switch, tap

pytestmark = pytest.mark.anyio
__all__ = ["gated_switch"]  # the fixture, used by name


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {})  # TrioBatch is the trio adapter's


class Gates:
    """Gates tapping through the batch as the adapter's connection tasks do (decide the
    read, wait until durable), and the answer codes each got."""

    def __init__(self, switch: Switch, keys: KeyStore, clock: FakeClock) -> None:
        self.switch, self.keys, self.clock = switch, keys, clock
        self.batch = TrioBatch(switch)
        self.got: dict[str, list[str]] = {}

    async def tap(self, terminal_id: str, card: str) -> None:
        frames = tap(self.keys, terminal_id, 1, card, self.clock)
        out, position = await self.batch.decide(frames)
        await self.switch.journal.wait_durable(position)
        client = ClientCodec(MacKey(self.keys.terminals[terminal_id]))
        client.receive_data(out)
        responses = client.next_responses()
        self.got[terminal_id] = [response.code for response, mac_ok in responses if mac_ok]


async def test_reads_handed_in_together_are_one_engine_pass(
    gated_switch: tuple[Switch, GatedFdatasync], keys: KeyStore, clock: FakeClock
) -> None:
    switch, gate = gated_switch
    gate.release.set()  # nothing held: the disk answers at once
    passes = CountingPasses.installed(switch)
    gates = Gates(switch, keys, clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gates.batch.run)
        async with trio.open_nursery() as connections:  # woken together, as by one poll
            for terminal_id, card in (
                ("G0001", "X00000010"),
                ("G0002", "X00000011"),
                ("G0003", "X00000012"),
            ):
                connections.start_soon(gates.tap, terminal_id, card)
        nursery.cancel_scope.cancel()
    assert gates.got == {t: [C.APPROVED] for t in ("G0001", "G0002", "G0003")}
    assert passes.batches == [3]


async def test_reads_arriving_while_a_group_is_synced_are_decided_at_once(
    gated_switch: tuple[Switch, GatedFdatasync], keys: KeyStore, clock: FakeClock
) -> None:
    switch, gate = gated_switch
    passes = CountingPasses.installed(switch)
    gates = Gates(switch, keys, clock)
    start = switch.journal.appended_position
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gates.batch.run)
        nursery.start_soon(gates.tap, "G0001", "X00000010")
        await anyio.to_thread.run_sync(gate.entered.wait)  # its group is being synced
        nursery.start_soon(gates.tap, "G0002", "X00000011")
        await trio.sleep(0.05)
        # Decided and appended while that group is in fdatasync (not held back as
        # LoopBatch does); its answer waits for its own group.
        assert switch.journal.appended_position == start + 2
        assert not gates.got
        gate.release.set()
        with trio.fail_after(10):
            while len(gates.got) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert gates.got == {"G0001": [C.APPROVED], "G0002": [C.APPROVED]}
    assert passes.batches == [1, 1]
