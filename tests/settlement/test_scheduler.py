"""The scheduler inside the switch: a day of hourly cycles on trio's virtual clock (so it
runs in well under a second), closes and settlements journalled, taps settled in the cycle
that journalled them, and catching up after the switch was down over cutovers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import trio
import trio.testing

from protocols.terminal import MacKey, Purchase, ServerCodec, Tap
from protocols.terminal.codec import encode_request
from settlement.config import SettlementConfig
from settlement.cutover import MINUTE_MS
from settlement.cycle import cycle_directory
from settlement.files import MANIFEST
from settlement.reconcile import (
    Action,
    ReconciliationResult,
    ReconException,
    resolution_record,
)
from settlement.scheduler import Scheduler
from settlement.store import EmbeddedStore
from switch.config import Config, ServerConfig
from switch.core import Switch, open_switch
from switch.keystore import KeyStore
from switch.service import run_service
from tests.conftest import T0_MS, FakeClock

HOUR_MS = 60 * MINUTE_MS
HOURLY = SettlementConfig(cycle_minutes=60)


def virtual_clock() -> Callable[[], int]:
    """The switch's clock on trio's virtual time: Monday 10:00 in Shiyan at the start."""
    start = trio.current_time()
    return lambda: T0_MS + round((trio.current_time() - start) * 1000)


def request(switch: Switch, keys: KeyStore, *requests: Tap | Purchase) -> list[int]:
    """Decide requests as a terminal's read would; returns the journal position."""
    codec = ServerCodec()
    for item in requests:
        codec.receive_data(encode_request(item, MacKey(keys.terminals[item.terminal_id])))
    _answers, position = switch.process(codec.next_frames())
    return [position]


async def wait_for(condition: Callable[[], bool]) -> None:
    """Let virtual time run until `condition` holds: settling runs in a worker thread, so
    the scheduler may be a little behind the clock, as it would be in production."""
    while not condition():
        await trio.sleep(1)


@pytest.mark.trio
async def test_a_day_of_hourly_cycles(
    data_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    del autojump_clock  # virtual time: sleeps end as soon as every task waits
    clock = virtual_clock()
    switch = open_switch(data_dir, Config(settlement=HOURLY), clock)
    keys = KeyStore.load(data_dir)
    scheduler = Scheduler(switch, HOURLY)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(switch.journal.run)
        await nursery.start(scheduler.run)
        await trio.sleep(30 * 60)  # 10:30: a tap, in the cycle closing at 11:00
        request(switch, keys, Tap("G0001", 1, clock(), "X00000010"))
        await trio.sleep(2 * 3600)  # 12:30: a purchase, in the cycle closing at 13:00
        await wait_for(lambda: len(switch.engine.settlement.closes) == 2)
        request(switch, keys, Purchase("P0001", 1, clock(), "X00000011", 420))
        await trio.sleep(22 * 3600)  # on to 10:30 the next day
        await wait_for(lambda: len(scheduler.settled_in_this_run) == 24)
        nursery.cancel_scope.cancel()
    state = switch.engine.settlement
    # Settling runs behind the clock in its thread: the scheduler may be closing the next.
    cutovers = [state.closes[cycle].cutover_ms for cycle in range(1, 25)]
    assert cutovers == [T0_MS + HOUR_MS * hour for hour in range(1, 25)]
    moved = {
        settled.info.cycle: settled.positions.movement_fen
        for settled in list(scheduler.settled_in_this_run)[:24]
    }
    assert moved[1] > 0  # the demo's purse loads, and the 10:30 tap
    assert moved[3] == 420
    assert {cycle for cycle, fen in moved.items() if fen} == {1, 3}
    for cycle in range(1, 25):
        directory = cycle_directory(data_dir, HOURLY, cycle)
        assert (directory / MANIFEST).exists()
        stored = await EmbeddedStore(data_dir, HOURLY).cycle(cycle)
        assert stored is not None and stored.digest == state.settled[cycle]


@pytest.mark.trio
async def test_cutovers_missed_while_down_are_closed_one_by_one(
    data_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    del autojump_clock
    clock = virtual_clock()
    switch = open_switch(data_dir, Config(settlement=HOURLY), clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(switch.journal.run)
        scheduler = Scheduler(switch, HOURLY)
        # Close at 11:00, and stop before settling: the switch "goes down" meanwhile.
        await scheduler.wait_until(T0_MS + HOUR_MS)
        await scheduler.close(T0_MS + HOUR_MS)
        await trio.sleep(4.5 * 3600)  # down until 15:30: the 12:00..15:00 cutovers pass
        restarted = Scheduler(switch, HOURLY)
        await nursery.start(restarted.run)
        await wait_for(lambda: len(restarted.settled_in_this_run) == 5)
        nursery.cancel_scope.cancel()
    state = switch.engine.settlement
    assert [state.closes[c].cutover_ms for c in range(1, 6)] == [
        T0_MS + HOUR_MS * hour for hour in range(1, 6)
    ]
    # The first, left unsettled before the stop, was settled first; the rest are empty.
    settled = list(restarted.settled_in_this_run)[:5]
    assert [s.info.cycle for s in settled] == [1, 2, 3, 4, 5]
    moved = [s.positions.movement_fen for s in settled]
    assert moved[0] > 0 and moved[1:] == [0, 0, 0, 0]
    assert restarted.statistics().last_settled_cycle >= 5


@pytest.mark.trio
async def test_a_failed_settlement_is_retried_and_never_stops_the_switch(
    data_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    del autojump_clock
    clock = virtual_clock()
    switch = open_switch(data_dir, Config(settlement=HOURLY), clock)
    blocker = data_dir / "settlement"
    blocker.write_text("a file where the settlement directory should be")
    scheduler = Scheduler(switch, HOURLY)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(switch.journal.run)
        await nursery.start(scheduler.run)
        await wait_for(lambda: scheduler.statistics().settle_failures_total == 1)
        assert 1 not in switch.engine.settlement.settled
        blocker.unlink()  # the operator frees the path; the retry settles the cycle
        await wait_for(lambda: len(scheduler.settled_in_this_run) == 1)
        nursery.cancel_scope.cancel()
    assert (cycle_directory(data_dir, HOURLY, 1) / MANIFEST).exists()


@pytest.mark.trio
async def test_the_switch_service_runs_the_scheduler(
    data_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    del autojump_clock
    config = Config(settlement=HOURLY, server=ServerConfig(port=0, metrics_port=0))
    switch = open_switch(data_dir, config, virtual_clock())
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_service, switch, config, stop)
        await wait_for(lambda: 1 in switch.engine.settlement.settled)
        stop.set()
    assert (cycle_directory(data_dir, HOURLY, 1) / MANIFEST).exists()


def result_with(cycle: int, bank: str, *entries: str) -> ReconciliationResult:
    exceptions = [
        ReconException("missing_theirs", entry, "X00000010", 200, 0, [3], []) for entry in entries
    ]
    return ReconciliationResult(cycle, bank, "0" * 64, "1" * 64, 0, 0, exceptions)


@pytest.mark.anyio
async def test_open_reconciliation_exceptions_are_counted_for_the_metrics(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, Config(settlement=HOURLY), clock)
    store = EmbeddedStore(data_dir, HOURLY)

    async def a_minute_passes(_seconds: float) -> None:
        clock.advance(minutes=1)

    scheduler = Scheduler(switch, HOURLY, store=store, sleep=a_minute_passes)
    first, second = HOURLY.partner_banks[:2]
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(switch.journal.run)
            await scheduler.close(scheduler.next_cutover_ms())
            await scheduler.settle(1)
            # Waiting for a cutover, the scheduler counts at each look at the clock.
            await scheduler.wait_until(clock() + MINUTE_MS)
            assert scheduler.open_exceptions == dict.fromkeys(HOURLY.partner_banks, 0)
            # `onecard settle reconcile` stores what a bank's return file did not match ...
            result = result_with(1, first, "PAYM 000000000001", "PAYM 000000000002")
            await store.save_reconciliation(result)
            await store.save_reconciliation(result_with(1, second, "PAYM 000000000003"))
            # ... and staff resolve one exception, journalled.
            resolved = resolution_record(
                result,
                switch.engine.settlement,
                "PAYM 000000000001",
                Action.BANK_TO_CORRECT,
                0,
                "staff-7",
                "the bank rebooks it",
                clock(),
            )
            await switch.journal.wait_durable(switch.submit([resolved]))
            await scheduler.wait_until(clock() + MINUTE_MS)
            group.cancel_scope.cancel()
    finally:
        switch.journal.close()
    expected = dict.fromkeys(HOURLY.partner_banks, 0) | {first: 1, second: 1}
    assert scheduler.open_exceptions == expected
