"""The task that runs the misuse rules on durable decisions and journals review flags.

It follows the journal from where it stood when the switch started, so it sees each
decision once, after it is durable, and never slows an answer. It takes the records from
the journal's in-memory feed, and from the files (JournalTail) only when it has fallen
behind what the feed holds. Flags go through
Switch.submit like any administrative record. After a restart it begins with the records
appended from then on: a pair of uses straddling a restart is not judged (the rules keep
no state in the journal, by design: they raise questions, not facts).
"""

from __future__ import annotations

import anyio
import anyio.abc

from switch.casework.records import ReviewFlagRaised
from switch.core import Switch
from switch.journal.records import Decision
from switch.misuse.rules import MisuseRules
from switch.store.tail import JournalTail

# Decisions judged per pass. A pass runs on the event loop between answers, at about 10 us
# per decision: 500 bounds it to ~5 ms. (5,000 per pass every 0.5 s stalled answers for
# 15 ms at a time and set the switch's p99 at 3,000 requests/s: docs/performance.md.)
BATCH_RECORDS = 500
# Shortest time between two passes once caught up: often enough that a pass stays small.
PASS_INTERVAL_SECONDS = 0.05


class MisuseWatcher:
    def __init__(self, switch: Switch, rules: MisuseRules) -> None:
        self.switch = switch
        self.rules = rules
        self.next_index = switch.journal.appended_position
        self.flags_total = 0
        self._feed = switch.journal.feed()
        self._tail = JournalTail(switch.journal.directory)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self.switch.journal.wait_durable(self.next_index + 1)
            await self.step()
            if self.next_index >= self.switch.journal.durable_position:
                # Caught up. Waking once per journal group cost a pass per request at
                # low load (docs/performance.md); the rules judge minutes, so waiting a
                # little before the next pass loses nothing and batches a few groups.
                await anyio.sleep(PASS_INTERVAL_SECONDS)
            else:
                # Behind: a pass from the feed never waits, so without this the whole
                # backlog would be judged while every answer waits.
                await anyio.lowlevel.checkpoint()

    async def step(self) -> int:
        """Judge the durable records not judged yet (one batch); returns flags raised."""
        journal = self.switch.journal
        start = self.next_index
        end = journal.durable_position
        records = self._feed.take(start, end, BATCH_RECORDS)
        if records is None:  # behind the feed: from the files
            records = await anyio.to_thread.run_sync(self._tail.read, start, end, BATCH_RECORDS)
        self.next_index = start + len(records)
        engine = self.switch.engine
        flags: list[ReviewFlagRaised] = []
        for offset, record in enumerate(records):
            if type(record) is not Decision:
                continue
            terminal = engine.terminals.get(record.terminal_id)
            for finding in self.rules.observe(
                start + offset, record, None if terminal is None else terminal.place
            ):
                flag_id = engine.casework.next_id(engine.casework.flags) + len(flags)
                flags.append(
                    ReviewFlagRaised(
                        self.switch.clock(),
                        flag_id,
                        finding.card,
                        finding.rule.value,
                        list(finding.evidence),
                        finding.detail,
                    )
                )
        if flags:
            self.switch.submit(list(flags))
            self.flags_total += len(flags)
        return len(flags)
