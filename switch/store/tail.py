"""Reading durable journal records back from the segment files, in order.

The projector and the misuse watcher follow the journal with this: they ask for the
records from an index up to the durable position, and get them in bounded batches. The
reader remembers where the last batch ended (segment and byte offset), so following the tail
reads each byte once; asking for another index starts again from that index's segment.
Records are read only up to the durable position the caller gives, so a group being
written is never seen half-way. Checksums are checked again; the hash chain was checked by
recovery at start and is not recomputed here.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from switch.errors import JournalCorrupt
from switch.journal.records import Record, decoder
from switch.journal.segment import HEADER, Damage, scan_records, segment_paths

# Bytes read from a segment per call: bounds the memory of a batch (records are ~100 bytes,
# so 4 MiB holds tens of thousands) while keeping reads large.
READ_BYTES_MAX = 4 * 1024 * 1024
# What a read asks for when few records are wanted: a follower's pass wants a few
# thousand, and reading 4 MiB of a preallocated segment for them cost more system time
# than the pass itself. A read that falls short is followed by another (read()).
READ_BYTES_MIN = 64 * 1024
# Bytes a record takes on disk, generously (a decision is ~130): sizes the read for the
# records wanted. A record larger than the read (an offline upload, a fare table) is read
# again whole, with READ_BYTES_MAX (_read_segment).
RECORD_BYTES_ESTIMATE = 256


class JournalTail:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._segment: Path | None = None
        self._offset = 0
        self._index = -1  # index of the record at _offset in _segment

    def _seek(self, index: int) -> None:
        paths = segment_paths(self.directory)
        chosen = None
        for path in paths:
            if int(path.name.split(".")[0]) <= index:
                chosen = path
        if chosen is None:
            raise JournalCorrupt(f"no journal segment holds record {index}")
        self._segment = chosen
        self._offset = HEADER.size
        self._index = int(chosen.name.split(".")[0])

    def read(self, start: int, end: int, count_max: int) -> list[Record]:
        """Records start .. min(end, start + count_max) - 1; `end` must be durable."""
        if start >= end:
            return []
        if self._segment is None or self._index != start:
            self._seek(start)
        out: list[Record] = []
        limit = min(end, start + count_max)
        while self._index < limit:
            assert self._segment is not None
            progressed = self._read_segment(out, start, limit)
            if self._index >= limit:
                break
            if not progressed:
                following = self.directory / f"{self._index:020d}{self._segment.suffix}"
                if following == self._segment or not following.exists():
                    raise JournalCorrupt(
                        f"journal record {self._index} is durable but not in the segments"
                    )
                self._segment, self._offset = following, HEADER.size
        return out

    def _read_segment(self, out: list[Record], start: int, limit: int) -> bool:
        wanted = (limit - self._index) * RECORD_BYTES_ESTIMATE
        size = min(max(wanted, READ_BYTES_MIN), READ_BYTES_MAX)
        progressed = self._read_chunk(out, start, limit, size)
        if not progressed and size < READ_BYTES_MAX:
            # Not one whole record in the read: the next is larger than it.
            progressed = self._read_chunk(out, start, limit, READ_BYTES_MAX)
        return progressed

    def _read_chunk(self, out: list[Record], start: int, limit: int, size: int) -> bool:
        assert self._segment is not None
        with open(self._segment, "rb") as file:
            file.seek(self._offset)
            data = file.read(size)
        progressed = False
        for item in scan_records(data, 0):
            if isinstance(item, Damage):
                break  # the end of what was read (or of what is written): read on later
            if self._index >= limit:
                break
            payload = data[item.payload_start : item.payload_start + item.length]
            if self._index >= start:
                try:
                    out.append(decoder.decode(payload))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise JournalCorrupt(f"journal record {self._index}: {exc}") from exc
            self._offset += item.payload_start - item.offset + item.length
            self._index += 1
            progressed = True
        return progressed


def read_records(directory: Path, indexes: list[int], durable_end: int) -> dict[int, Record]:
    """The records at `indexes` (each < durable_end), for evidence checks. Slow path: reads
    from each index's segment; call it in a thread."""
    found: dict[int, Record] = {}
    tail = JournalTail(directory)
    for index in sorted(set(indexes)):
        if 0 <= index < durable_end:
            (record,) = tail.read(index, index + 1, 1)
            found[index] = record
    return found
