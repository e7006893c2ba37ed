"""The misuse watcher runs the rules in its follower process, which reads the durable
journal from the files, and journals what it finds as review flags. A follower that dies
is replaced, and judging goes on from the first record not judged."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from switch.config import Config
from switch.core import Switch, open_switch
from switch.journal.records import Decision, Record, TerminalRegistered
from switch.misuse import watcher as watcher_module
from switch.misuse.places import DEFAULT_PLACES, load_places
from switch.misuse.watcher import MisuseWatcher
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio

# For the follower's answers: it starts in well under a second.
WAIT_SECONDS = 30


def use(clock: FakeClock, terminal: str, card: str, seq: int) -> Decision:
    return Decision(
        time_ms=clock(),
        terminal_time_ms=clock(),
        terminal_id=terminal,
        seq=seq,
        kind="tap",
        card=card,
        amount_fen=0,
        original_seq=0,
        code="00",
        moved_fen=0,
        balance_fen=None,
        reference=1_000_000 + seq,
    )


def impossible_trip(clock: FakeClock, card: str, seq: int, far_gate: str) -> list[Record]:
    """In at M00 (gate MI01), then five minutes later at `far_gate`."""
    records: list[Record] = [use(clock, "MI01", card, seq)]
    clock.advance(minutes=5)
    records.append(use(clock, far_gate, card, seq + 1))
    return records


def watcher_for(switch: Switch) -> MisuseWatcher:
    return MisuseWatcher(switch, Config().misuse, load_places(DEFAULT_PLACES))


@contextlib.asynccontextmanager
async def watching(switch: Switch, watcher: MisuseWatcher) -> AsyncIterator[None]:
    """The journal writer and the watcher running for the block, the journal durable
    before the watcher starts; the journal closed after."""
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(switch.journal.run)
            await switch.journal.flush()
            await group.start(watcher.run)
            yield
            group.cancel_scope.cancel()
    finally:
        switch.journal.close()


async def judged(watcher: MisuseWatcher, position: int) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        await watcher.wait_judged(position)


def flags_of(switch: Switch) -> list[tuple[str, str]]:
    return [(f.raised.card, f.raised.rule) for f in switch.engine.casework.flags.values()]


async def test_the_follower_finds_and_the_watcher_journals_flags(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, Config(), clock)
    watcher = watcher_for(switch)
    journal = switch.journal
    first = journal.appended_position
    # Journalled only (no engine state): the rules judge what the journal says. MO07
    # stands at M52, 52 km from M00; MZ01, unknown to the switch when the follower
    # starts, is registered at M52 in the journal, and the follower learns its place there.
    trip = impossible_trip(clock, "X00000044", 1, "MO07")
    journal.append(trip[:1])
    journal.append(trip[1:])
    registered = TerminalRegistered("MZ01", "gate", "shiyan-metro", "000000", "M", "M52", "exit")
    journal.append([registered, *impossible_trip(clock, "X00000045", 10, "MZ01")])
    async with watching(switch, watcher):
        await judged(watcher, journal.appended_position)
        assert watcher.follower_pid is not None
        # It takes only CPU that nothing else wants (switch/background.py).
        assert os.sched_getscheduler(watcher.follower_pid) == os.SCHED_IDLE
    assert flags_of(switch) == [
        ("X00000044", "impossible_travel"),
        ("X00000045", "impossible_travel"),
    ]
    raised = next(iter(switch.engine.casework.flags.values())).raised
    assert raised.evidence == [first, first + 1]  # the two decisions' journal indexes
    assert watcher.flags_total == 2
    assert watcher.restarts_total == 0


async def test_a_killed_follower_is_replaced_and_judging_goes_on(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "RESTART_SECONDS", 0.01)
    switch = open_switch(data_dir, Config(), clock)
    watcher = watcher_for(switch)
    journal = switch.journal
    # A trip whose first use the first follower judges, then one wholly after its death:
    # the new follower has forgotten the first use, so only the second trip is found.
    journal.append(impossible_trip(clock, "X00000044", 1, "MO07"))
    journal.append([use(clock, "MI01", "X00000046", 20)])
    async with watching(switch, watcher):
        await judged(watcher, journal.appended_position)
        assert watcher.follower_pid is not None
        os.kill(watcher.follower_pid, signal.SIGKILL)
        clock.advance(minutes=5)
        journal.append([use(clock, "MO07", "X00000046", 21)])
        journal.append(impossible_trip(clock, "X00000047", 30, "MO07"))
        await judged(watcher, journal.appended_position)
    assert watcher.restarts_total == 1
    assert flags_of(switch) == [
        ("X00000044", "impossible_travel"),
        ("X00000047", "impossible_travel"),
    ]


async def test_records_a_follower_keeps_failing_on_are_skipped_not_judged_forever(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "RESTART_SECONDS", 0.01)
    # A follower that cannot start (a broken installation, a record that crashes it).
    monkeypatch.setattr(
        watcher_module, "FOLLOWER_COMMAND", (sys.executable, "-c", "raise SystemExit(3)")
    )
    switch = open_switch(data_dir, Config(), clock)
    watcher = watcher_for(switch)
    journal = switch.journal
    first = journal.appended_position
    journal.append(impossible_trip(clock, "X00000044", 1, "MO07"))
    async with watching(switch, watcher):
        await judged(watcher, journal.durable_position)
    assert watcher.restarts_total == watcher_module.FAILURES_IN_A_ROW_MAX
    assert watcher.skipped_records_total == journal.durable_position - first == 2
    assert flags_of(switch) == []
