"""The misuse follower: a process of its own that reads the durable journal and runs the
misuse rules, so that the switch's event loop spends nothing on them.

    python -m switch.misuse.follower

The watcher (misuse/watcher.py) starts it and speaks misuse/wire.py with it on its stdin
and stdout. It reads the records back from the segment files (JournalTail: the page cache,
since they were just written), on whatever core the switch is not using. On the switch's
own event loop the rules cost about 8% of the main thread at the pipelined peak, with
every card's latest use (a million entries) in the switch's heap (docs/performance.md,
"Sixth round").

It runs at the lowest priority (switch/background.py): while both cores are busy it falls
behind and catches up after, and onecard_misuse_lag_records says by how much. It costs
about 4 us a record, three times the rules' own cost, because it decodes each record
again; the switch's main thread, the bottleneck, is spared all of it.

It exits when its stdin ends (the switch stopped, or died); it ignores SIGINT, which a
Ctrl-C in the switch's terminal sends to the whole process group, so that the switch
decides when it stops.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from switch.background import lowest_priority
from switch.errors import FollowerError
from switch.journal.records import Decision, TerminalRegistered
from switch.misuse.rules import Finding, MisuseRules
from switch.misuse.wire import Judge, Judged, Start, encode, read_message
from switch.store.tail import JournalTail
from switch.transit.rides import Place

# Records judged per answer: bounds a pass's memory and how long the watcher waits for an
# answer (~0.2 s at ~4 us a record) when the follower starts behind.
JUDGE_RECORDS_MAX = 50_000


class Follower:
    """The rules over the journal's records, from `start.next_index` on."""

    def __init__(self, start: Start) -> None:
        self.rules = MisuseRules(start.config, start.places)
        self.terminals = dict(start.terminals)
        self.next_index = start.next_index
        self._tail = JournalTail(Path(start.journal_dir))

    def judge(self, durable_position: int) -> Judged:
        """Judge the records from next_index up to `durable_position` (one batch)."""
        start = self.next_index
        records = self._tail.read(start, durable_position, JUDGE_RECORDS_MAX)
        findings: list[Finding] = []
        terminals = self.terminals
        observe = self.rules.observe
        for offset, record in enumerate(records):
            if type(record) is Decision:
                place = terminals.get(record.terminal_id)
                findings.extend(observe(start + offset, record, place))
            elif type(record) is TerminalRegistered:
                place = Place(record.line, record.station, record.direction)
                terminals[record.terminal_id] = place
        self.next_index = start + len(records)
        return Judged(self.next_index, findings)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lowest_priority()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    start = read_message(stdin)
    if start is None:
        return 0
    if type(start) is not Start:
        raise FollowerError(f"expected Start, got {type(start).__name__}")
    follower = Follower(start)
    while (message := read_message(stdin)) is not None:
        if type(message) is not Judge:
            raise FollowerError(f"expected Judge, got {type(message).__name__}")
        stdout.write(encode(follower.judge(message.durable_position)))
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
