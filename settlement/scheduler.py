"""The settlement scheduler: a task in the switch service that closes a cycle at each
cutover and settles every closed cycle, using the switch's clock.

    run ─► settle every closed, unsettled cycle (oldest first; after a restart too)
      └──► wait for the next cutover ─► close the open cycle ─► settle it ─► ...

Closing is one journal record built and submitted with no await in between (the cycle ends
with the record just before the close); settling starts only once the close is durable, and
reads nothing after it, so it cannot race with closing or with what the switch journals
meanwhile. A cycle is settled because it is closed, whatever amount it holds. Cutovers
missed while the switch was down are closed one by one at start, each with its own
business date (the later ones empty), so every bank gets a file for every business day.

Settling runs in a worker thread (and worker processes for large cycles), so the terminal
channel keeps answering. A failure to settle is logged and retried after
SETTLE_RETRY_SECONDS; it never stops the switch. A failed journal write does (JournalFailed
propagates, as everywhere in the service).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import sniffio

from settlement.config import SettlementConfig
from settlement.cutover import next_cutover_ms
from settlement.cycle import SettledCycle, close_record, settle_cycle, settlement_directory
from settlement.errors import SettlementError
from settlement.records import CycleClosed
from settlement.store import EmbeddedStore, SettlementStore
from switch.core import Switch

log = logging.getLogger("onecard.settlement")

# Wall clocks get stepped (NTP, an operator): the scheduler looks at the clock again at
# least this often instead of trusting one long sleep to end at the cutover.
SLEEP_SECONDS_MAX = 60.0
# After a failed settlement (a disk full, PostgreSQL down), try again this much later
# rather than at the next cutover: banks expect the file within hours of the close.
SETTLE_RETRY_SECONDS = 600.0
# Settled cycles kept in memory (files and all): a day of hourly drill cycles, twice over.
RECENT_SETTLED_MAX = 48
# Settled cycles whose reconciliation exceptions the metrics count as open: a bank's
# disputes are raised and settled within weeks, and 90 daily cycles is a quarter; one
# still open after that is for the reconciliation reports, not for an alert.
RECONCILED_CYCLES_WATCHED = 90

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class SchedulerStatistics:
    open_cycle: int
    last_closed_cycle: int
    last_settled_cycle: int
    unsettled_cycles: int
    settle_failures_total: int
    last_settle_seconds: float
    next_cutover_ms: int


async def open_store(data_dir: Path, config: SettlementConfig) -> SettlementStore:
    """PostgreSQL when configured and on asyncio; the embedded record otherwise."""
    if config.dsn:
        if sniffio.current_async_library() == "asyncio":
            from settlement.postgres import PostgresStore  # noqa: PLC0415 - asyncio only

            return await PostgresStore.connect(config.dsn)
        log.warning(
            "settlement: PostgreSQL is configured but the loop is trio, and asyncpg runs on "
            "asyncio only: cycles are recorded in the embedded store"
        )
    return EmbeddedStore(data_dir, config)


class Scheduler:
    def __init__(
        self,
        switch: Switch,
        config: SettlementConfig,
        *,
        store: SettlementStore | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.switch = switch
        self.config = config
        self.data_dir = switch.journal.directory.parent
        self._store = store
        self._sleep = sleep
        self._started_ms = switch.clock()
        self._retry_at_ms: int | None = None
        self.settle_failures_total = 0
        self.last_settle_seconds = 0.0
        # The cycles this scheduler settled, latest last (for tests and operators).
        self.settled_in_this_run: deque[SettledCycle] = deque(maxlen=RECENT_SETTLED_MAX)
        # Open reconciliation exceptions by bank, as of the last look (None: not looked
        # yet, or the store could not be read then), for the metrics.
        self.open_exceptions: dict[str, int] | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        store = self._store or await open_store(self.data_dir, self.config)
        self._store = store
        try:
            task_status.started()
            while True:
                await self.settle_pending()
                due = self.next_cutover_ms()
                if self._retry_at_ms is not None:
                    due = min(due, self._retry_at_ms)
                await self.wait_until(due)
                if due == self.next_cutover_ms():
                    await self.close(due)
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    def next_cutover_ms(self) -> int:
        last = self.switch.engine.settlement.last_close
        return next_cutover_ms(self._started_ms if last is None else last.cutover_ms, self.config)

    async def wait_until(self, due_ms: int) -> None:
        while (now := self.switch.clock()) < due_ms:
            await self.count_open_exceptions()
            await self._sleep(min((due_ms - now) / 1000, SLEEP_SECONDS_MAX))

    async def count_open_exceptions(self) -> None:
        """Look again at the recent cycles' reconciliation exceptions: what the store holds
        (reconciliation runs in `onecard settle reconcile`, another process) less what the
        journal holds resolved. An unreadable store leaves the figure absent, not stale."""
        if self._store is None:
            return  # not running (tests drive wait_until alone)
        state = self.switch.engine.settlement
        banks = self.config.partner_banks
        counts = dict.fromkeys(banks, 0)
        try:
            for cycle in sorted(state.settled)[-RECONCILED_CYCLES_WATCHED:]:
                for bank in banks:
                    result = await self._store.reconciliation(cycle, bank)
                    if result is not None:
                        counts[bank] += sum(
                            (cycle, bank, exception.entry) not in state.resolved
                            for exception in result.exceptions
                        )
        except SettlementError as exc:
            if self.open_exceptions is not None:
                log.warning("settlement: reconciliation exceptions not counted: %s", exc)
            self.open_exceptions = None
            return
        self.open_exceptions = counts

    async def close(self, cutover_ms: int) -> CycleClosed:
        """Close the open cycle; returns once the close is durable."""
        switch = self.switch
        record = close_record(
            switch.engine.settlement, switch.journal.appended_position, switch.clock(), cutover_ms
        )
        await switch.journal.wait_durable(switch.submit([record]))
        log.info(
            "settlement: cycle %d closed at journal record %d (cutover %d)",
            record.cycle,
            record.last_index,
            record.cutover_ms,
        )
        return record

    async def settle_pending(self) -> None:
        """Settle every closed cycle not settled yet, oldest first; stop at a failure and
        retry it later."""
        self._retry_at_ms = None
        for cycle in self.switch.engine.settlement.unsettled():
            try:
                await self.settle(cycle)
            except (SettlementError, OSError) as exc:
                self.settle_failures_total += 1
                self._retry_at_ms = self.switch.clock() + round(SETTLE_RETRY_SECONDS * 1000)
                log.error(
                    "settlement: cycle %d NOT SETTLED: %s; retrying in %d s",
                    cycle,
                    exc,
                    SETTLE_RETRY_SECONDS,
                )
                return

    async def settle(self, cycle: int) -> SettledCycle:
        state = self.switch.engine.settlement
        close = state.closes[cycle]
        started = time.perf_counter()
        settled = await anyio.to_thread.run_sync(
            functools.partial(
                settle_cycle,
                self.data_dir,
                self.config,
                self.switch.recovery.chain_key,
                close,
                state.closes.get(cycle - 1),
                previous_digest=state.settled.get(cycle - 1),
            ),
            # A shutdown does not wait for a long settlement: its files are written
            # atomically, and the cycle is settled again at the next start.
            abandon_on_cancel=True,
        )
        assert self._store is not None
        await self._store.save_cycle(settled)
        if cycle not in state.settled:  # journalled once, even if settled again by hand
            record = settled.record(self.switch.clock())
            await self.switch.journal.wait_durable(self.switch.submit([record]))
        self.last_settle_seconds = time.perf_counter() - started
        self.settled_in_this_run.append(settled)
        log.info(
            "settlement: cycle %d settled in %.1f s: %d records, %d fen moved, digest %s",
            cycle,
            self.last_settle_seconds,
            settled.info.records,
            settled.positions.movement_fen,
            settled.digest[:16],
        )
        return settled

    def statistics(self) -> SchedulerStatistics:
        state = self.switch.engine.settlement
        return SchedulerStatistics(
            open_cycle=state.open_cycle,
            last_closed_cycle=len(state.closes),
            last_settled_cycle=max(state.settled, default=0),
            unsettled_cycles=len(state.unsettled()),
            settle_failures_total=self.settle_failures_total,
            last_settle_seconds=self.last_settle_seconds,
            next_cutover_ms=self.next_cutover_ms(),
        )


async def run_scheduler(
    switch: Switch,
    config: SettlementConfig,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The service's settlement task (switch/service.py starts it when enabled)."""
    directory = settlement_directory(switch.journal.directory.parent, config)
    log.info("settlement: files in %s, cutover %s", directory, config.cutover)
    await Scheduler(switch, config).run(task_status=task_status)
