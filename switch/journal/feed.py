"""Records as they are appended, for the in-process followers of the journal.

The misuse watcher and the PostgreSQL projector judge or copy every durable record. Reading
them back from the segment files re-decodes every record in a worker thread that holds the
GIL: at peak that cost a fifth of the switch's capacity (docs/performance.md). The records
were objects on the loop a moment before, so the journal hands them to a feed as it appends
them, and a follower takes them from there once they are durable.

A feed is bounded: past RECORDS_MAX it forgets its oldest records, and a follower that has
fallen that far behind (or that starts behind, after a restart) reads the gap from the
files with switch.store.tail.JournalTail, then continues from memory. What a follower sees
is the same either way: every record once, in order, only once durable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from switch.journal.records import Record

# Records a feed keeps for a follower that has not taken them yet. Followers pass every
# half second or so; at 20,000 records/s 50,000 is 2.5 s of slack, and at a few hundred
# bytes per record object a bounded 10-20 MB.
RECORDS_MAX = 50_000


class JournalFeed:
    __slots__ = ("_buffered", "_chunks", "_next", "_records_max")

    def __init__(self, next_index: int, records_max: int = RECORDS_MAX) -> None:
        self._chunks: deque[tuple[int, Sequence[Record]]] = deque()
        self._buffered = 0
        self._next = next_index  # the index the next pushed record gets
        self._records_max = records_max

    @property
    def buffered(self) -> int:
        return self._buffered

    def push(self, first_index: int, records: Sequence[Record]) -> None:
        """Records `first_index`.. just appended (called by Journal.append only)."""
        if first_index != self._next:
            # Every append passes here, so the chunks are contiguous; anything else is a bug
            # that would make a follower skip or repeat records.
            raise AssertionError(f"feed expected record {self._next}, got {first_index}")
        self._chunks.append((first_index, records))
        self._buffered += len(records)
        self._next = first_index + len(records)
        while self._buffered > self._records_max:
            _first, dropped = self._chunks.popleft()
            self._buffered -= len(dropped)

    def take(self, start: int, end: int, count_max: int) -> list[Record] | None:
        """Records start .. min(end, start + count_max) - 1 (`end` durable), or None when
        the feed no longer holds record `start`: read those from the files."""
        chunks = self._chunks
        while chunks and chunks[0][0] + len(chunks[0][1]) <= start:
            _first, taken = chunks.popleft()  # the follower is past them
            self._buffered -= len(taken)
        limit = min(end, start + count_max)
        if start >= limit:
            return []
        if not chunks or start < chunks[0][0]:
            return None
        out: list[Record] = []
        index = start
        for first, records in chunks:
            if index >= limit:
                break
            out.extend(records[index - first : min(len(records), limit - first)])
            index = first + len(records)
        return out
