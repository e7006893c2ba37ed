"""Reading the journal back at start.

A crash can leave the last segment with a torn tail: a record whose bytes did not all reach
the disk. Such a record was never acknowledged (answers wait for fdatasync), so recovery
truncates it and says so loudly. A bad record anywhere else is corruption, and the switch
refuses to start rather than serve from a history it cannot trust.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from switch.errors import JournalCorrupt
from switch.journal.records import Record, decoder
from switch.journal.segment import (
    FORMAT_VERSION,
    HEADER,
    MAGIC,
    RECORD_BYTES_MAX,
    RECORD_HEADER,
    segment_paths,
)

log = logging.getLogger("onecard.journal")


@dataclass(frozen=True)
class RecoveryReport:
    records: int  # records replayed
    next_index: int  # index the next appended record gets
    segments: int
    truncated_bytes: int  # torn tail removed from the last segment (0 when clean)
    truncated_segment: str | None
    last_segment: Path | None
    last_segment_bytes: int  # size of the last segment after truncation


def _scan(data: bytes, start: int) -> tuple[list[tuple[int, int]], int, str | None]:
    """(payload offset, length) of every intact record from `start`, the offset where the
    intact prefix ends, and why it ended early (None when it reached the end)."""
    spans: list[tuple[int, int]] = []
    offset = start
    size = len(data)
    while offset < size:
        if size - offset < RECORD_HEADER.size:
            return spans, offset, "partial record header"
        length, crc = RECORD_HEADER.unpack_from(data, offset)
        # No record encodes to zero bytes, and CRC-32 of nothing is 0: without this check a
        # zero-filled tail (file size extended, data never written) would pass the checksum.
        if not 0 < length <= RECORD_BYTES_MAX:
            return spans, offset, f"record length {length} outside 1..{RECORD_BYTES_MAX}"
        begin = offset + RECORD_HEADER.size
        end = begin + length
        if end > size:
            return spans, offset, "partial record payload"
        if zlib.crc32(data[begin:end]) != crc:
            return spans, offset, "checksum mismatch"
        spans.append((begin, length))
        offset = end
    return spans, offset, None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(directory: Path, apply: Callable[[int, Record], None]) -> RecoveryReport:
    """Replay every intact record through `apply(index, record)` in order; truncate a torn
    tail of the last segment; raise JournalCorrupt for damage anywhere else."""
    paths = segment_paths(directory)
    next_index = 0
    truncated_bytes = 0
    truncated_segment = None
    last_size = 0
    for number, path in enumerate(paths):
        last = number == len(paths) - 1
        data = path.read_bytes()
        if len(data) < HEADER.size:
            if last and next_index == int(path.stem):
                # Crashed while creating the segment: nothing in it was acknowledged.
                log.error("journal: segment %s has a torn header; rewriting it", path.name)
                truncated_bytes, truncated_segment = len(data), path.name
                path.unlink()
                # Records appended after this point go to the previous segment; should the
                # removal not survive a crash, the stale name would then read as a gap.
                _fsync_directory(directory)
                paths.pop()
                break
            raise JournalCorrupt(f"{path.name}: shorter than its header")
        magic, version, first_index = HEADER.unpack_from(data, 0)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise JournalCorrupt(f"{path.name}: not a format-{FORMAT_VERSION} journal segment")
        if first_index != next_index:
            raise JournalCorrupt(
                f"{path.name}: starts at record {first_index}, expected {next_index}"
            )
        spans, intact_end, problem = _scan(data, HEADER.size)
        if problem is not None and not last:
            raise JournalCorrupt(f"{path.name} at byte {intact_end}: {problem}")
        for begin, length in spans:
            try:
                record = decoder.decode(data[begin : begin + length])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise JournalCorrupt(
                    f"{path.name} record {next_index}: checksum intact but undecodable: {exc}"
                ) from exc
            apply(next_index, record)
            next_index += 1
        last_size = intact_end
        if problem is not None:
            truncated_bytes = len(data) - intact_end
            truncated_segment = path.name
            log.error(
                "journal: TORN TAIL in %s at byte %d (%s): truncating %d bytes that were "
                "never acknowledged; %d records recovered",
                path.name,
                intact_end,
                problem,
                truncated_bytes,
                next_index,
            )
            with open(path, "r+b") as file:
                file.truncate(intact_end)
                os.fsync(file.fileno())
    return RecoveryReport(
        records=next_index,
        next_index=next_index,
        segments=len(paths),
        truncated_bytes=truncated_bytes,
        truncated_segment=truncated_segment,
        last_segment=paths[-1] if paths else None,
        last_segment_bytes=last_size,
    )
