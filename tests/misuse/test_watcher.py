"""The misuse watcher follows the journal without holding up the answers around it: it
judges in bounded passes and lets the event loop run between them, even with a backlog
that its in-memory feed hands over without ever waiting."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from switch.config import Config
from switch.core import open_switch
from switch.journal.records import Decision
from switch.misuse import watcher as watcher_module
from switch.misuse.places import DEFAULT_PLACES, load_places
from switch.misuse.rules import MisuseRules
from switch.misuse.watcher import MisuseWatcher
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio

BACKLOG = 2_000


def tap(index: int, clock: FakeClock) -> Decision:
    return Decision(
        time_ms=clock(),
        terminal_time_ms=clock(),
        terminal_id="G0001",
        seq=index + 1,
        kind="tap",
        card=f"X{8 + index:08d}",
        amount_fen=0,
        original_seq=0,
        code="00",
        moved_fen=0,
        balance_fen=None,
        reference=1_000_000 + index,
    )


async def test_a_backlog_is_judged_in_passes_with_the_loop_running_between(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "BATCH_RECORDS", 100)
    switch = open_switch(data_dir, Config(), clock)
    watcher = MisuseWatcher(switch, MisuseRules(Config().misuse, load_places(DEFAULT_PLACES)))
    journal = switch.journal
    # Journalled only (no engine state): the watcher judges what the journal says.
    journal.append([tap(index, clock) for index in range(BACKLOG)])
    end = journal.appended_position
    turns_while_behind = 0
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            await journal.flush()
            group.start_soon(watcher.run)
            while watcher.next_index < end:
                turns_while_behind += 1
                await anyio.lowlevel.checkpoint()
            group.cancel_scope.cancel()
    finally:
        journal.close()
    assert watcher.next_index == end
    # Twenty passes of 100: the loop ran between them, not once after the whole backlog.
    assert turns_while_behind >= BACKLOG // 100 - 1
