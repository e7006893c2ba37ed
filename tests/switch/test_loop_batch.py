"""The asyncio adapter's cross-connection batch (switch/server/asyncio_adapter.py LoopBatch),
driven with real frames, a real switch and journal, and fake connections: what it decides
when, and what each connection is answered."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from protocols.codes import ResponseCode as C
from protocols.terminal import ClientCodec, MacKey, ServerCodec, Tap
from protocols.terminal.codec import RejectedFrame, RequestFrame, encode_request
from switch.config import Config, ServerConfig
from switch.core import Switch, open_switch
from switch.journal import Journal
from switch.keystore import KeyStore
from switch.server.asyncio_adapter import LoopBatch
from tests.conftest import FakeClock
from tests.journal.test_journal import GatedFdatasync

pytestmark = pytest.mark.anyio
CONFIG = Config(server=ServerConfig(port=0, metrics_port=0))


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # LoopBatch is the asyncio adapter's


class FakeConnection:
    """Stands in for TerminalProtocol: what LoopBatch calls on a connection."""

    def __init__(self, terminal_id: str, key: MacKey) -> None:
        self.terminal_id = terminal_id
        self.client = ClientCodec(key)
        self.dirty = False
        self.outbox: list[bytes] = []
        self.flushed: list[bytes] = []

    def answered(self, out: bytes, count: int) -> None:
        self.outbox.append(out)

    def flush(self) -> None:
        self.flushed.append(b"".join(self.outbox))
        self.outbox = []

    def answers(self) -> list[str]:
        self.client.receive_data(b"".join(self.flushed))
        return [response.code for response, mac_ok in self.client.next_responses() if mac_ok]


def tap(
    keys: KeyStore, terminal_id: str, seq: int, card: str, clock: FakeClock
) -> list[RequestFrame | RejectedFrame]:
    request = Tap(terminal_id, seq, clock(), card)
    codec = ServerCodec()
    codec.receive_data(encode_request(request, MacKey(keys.terminals[terminal_id])))
    return codec.next_frames()


class CountingPasses:
    """Switch.process_reads, counting its calls (one per engine pass)."""

    def __init__(self, switch: Switch) -> None:
        self.real = switch.process_reads
        self.batches: list[int] = []  # reads per pass

    @classmethod
    def installed(cls, switch: Switch) -> CountingPasses:
        """Counting in place of the switch's own."""
        passes = cls(switch)
        switch.process_reads = passes  # type: ignore[method-assign]
        return passes

    def __call__(self, reads: list[list[RequestFrame | RejectedFrame]]) -> Any:
        self.batches.append(len(reads))
        return self.real(reads)


@pytest.fixture
async def gated_switch(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Switch, GatedFdatasync]]:
    switch = open_switch(data_dir, CONFIG, clock)
    switch.journal.close()
    # The same journal, with a sync the test holds: its first group stays in fdatasync
    # until the test lets it go.
    gate = GatedFdatasync(os.fdatasync)
    switch.journal = Journal(switch.journal.directory, switch.recovery, sync=gate)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(switch.journal.run)
            yield switch, gate
            gate.release.set()
            await switch.journal.flush()
            group.cancel_scope.cancel()
    finally:
        gate.release.set()
        switch.journal.close()


async def test_reads_arriving_while_a_group_is_synced_are_decided_as_one_batch_after_it(
    gated_switch: tuple[Switch, GatedFdatasync], keys: KeyStore, clock: FakeClock
) -> None:
    switch, gate = gated_switch
    passes = CountingPasses.installed(switch)
    batch = LoopBatch(switch, asyncio.get_running_loop())
    first, second, third = (
        FakeConnection(t, MacKey(keys.terminals[t])) for t in ("G0001", "G0002", "G0003")
    )
    start = switch.journal.appended_position

    batch.add(first, tap(keys, "G0001", 1, "X00000001", clock))  # type: ignore[arg-type]
    assert await anyio.to_thread.run_sync(gate.entered.wait, 10)  # its group is being synced
    assert switch.journal.appended_position == start + 1

    # Two reads, in two loop iterations, while that group is still in fdatasync.
    batch.add(second, tap(keys, "G0002", 1, "X00000010", clock))  # type: ignore[arg-type]
    await anyio.sleep(0.05)
    batch.add(third, tap(keys, "G0003", 1, "X00000011", clock))  # type: ignore[arg-type]
    await anyio.sleep(0.05)
    # Not decided: their answers could not leave before the group in flight anyway.
    assert switch.journal.appended_position == start + 1
    assert passes.batches == [1]

    gate.release.set()
    with anyio.fail_after(10):
        while not (second.flushed and third.flushed):
            await anyio.sleep(0.01)
    assert first.answers() == [C.APPROVED]
    assert second.answers() == [C.APPROVED] and third.answers() == [C.APPROVED]
    # Decided together: one engine pass for both, one journal group after the first.
    assert passes.batches == [1, 2]
    assert switch.journal.group_records.count == 2
    assert switch.journal.group_records.total == 3
    assert switch.journal.durable_position == start + 3


async def test_a_read_with_nothing_in_flight_is_decided_in_the_same_loop_iteration(
    gated_switch: tuple[Switch, GatedFdatasync], keys: KeyStore, clock: FakeClock
) -> None:
    switch, gate = gated_switch
    gate.release.set()  # nothing held: the disk answers at once
    batch = LoopBatch(switch, asyncio.get_running_loop())
    connection = FakeConnection("G0001", MacKey(keys.terminals["G0001"]))
    start = switch.journal.appended_position
    batch.add(connection, tap(keys, "G0001", 1, "X00000001", clock))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # one iteration: the decision is made, not waited for
    assert switch.journal.appended_position == start + 1
    with anyio.fail_after(10):
        while not connection.flushed:
            await anyio.sleep(0.01)
    assert connection.answers() == [C.APPROVED]
