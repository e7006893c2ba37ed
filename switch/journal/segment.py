"""Journal file format (version 3: hash-chained per link; version 2 still read).

A journal is a directory of segment files named by the index of their first record
(`00000000000000000000.journal`). A segment is

    header  32 bytes: magic b"OCJ1", u32 format version (3, or 2), u64 index of its first
            record, 16-byte chain value before that record
    record* u32 length field, u32 CRC-32 of the payload, 16-byte chain value, payload
            (records.py, MessagePack)

all integers big-endian. The length field holds the payload's length in its low 30 bits;
its top bit is set on the last record of each write group, the next one (format 3) on the
last record of each link. The segment being written is preallocated (writer.py), so
after a crash its file may run on past the last record in zeros: space never written,
which ends the segment as the file's end would. Only the last segment may have such a
tail; the writer cuts a segment to its records before it starts the next.

A record's index is its position in the whole journal, counted from 0. An append is the
records the engine decided together (one call of `Journal.append`); it never spans write
groups or segments. Format 3 cuts each append into links of LINK_RECORDS_MAX consecutive
records (the last link of an append may be shorter) and stores one chain value per link,
on its last record; the other records' chain fields are zero:

    chain(link) = keyed BLAKE2b-128(key = the journal key,
                      chain(previous link) || u64 index of its first record ||
                      (u32 payload length || payload) for each of its records)

with the chain before the first link = 16 zero bytes. Format 2 chained every record on
its own, as keyed BLAKE2b-128(chain(i-1) || u64 i || payload): a digest per record, which
cost the event loop twice what the rest of a record's encoding does (docs/performance.md,
Seventh round). The price of links is granularity: a record altered, deleted, inserted or
moved is found as its link's chain value failing, which names the link's records.

The CRC tells a torn or decayed record (a crash, a bad sector); the chain tells a record
that is intact but not where it was written: altered and re-checksummed, deleted,
inserted, moved or re-split. A link-end mark set or cleared changes which records a chain
value covers, so it cannot match either. Without the journal key (keys.json) the chain
cannot be forged, so the journal is tamper-evident, not merely checksummed. A write group
ends on a link's end; a snapshot is taken at an append's end, so it also starts a link.

The group-end bit is what lets recovery tell a torn write from damage: a crash can tear
only the group being synced, the last one, so damage followed by two group ends (its own
group's and a complete later one) lies in a group that was synced and acknowledged.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from switch.journal.records import Record, encoder

MAGIC = b"OCJ1"
FORMAT_VERSION = 3
# Segments of these versions are read; only FORMAT_VERSION is written (writer.py starts a
# new segment rather than continue one of another version).
READABLE_VERSIONS = frozenset({2, FORMAT_VERSION})
CHAIN_SIZE = 16
GENESIS_CHAIN = bytes(CHAIN_SIZE)
NO_CHAIN = bytes(CHAIN_SIZE)  # format 3: the chain field of a record inside a link
HEADER = struct.Struct(f">4sIQ{CHAIN_SIZE}s")
RECORD_HEADER = struct.Struct(f">II{CHAIN_SIZE}s")
_INDEX = struct.Struct(">Q")
LINK_LENGTH = struct.Struct(">I")  # a record's payload length, as a link's hash takes it
GROUP_END = 0x8000_0000
LINK_END = 0x4000_0000  # format 3; format 2 lengths never reach it (RECORD_BYTES_MAX)
# Records per link of the chain, at most (format 3). One digest per link instead of per
# record is what makes format 3 cheap; a short link is what lets `journal verify` point at
# the few records a wrong chain value may concern. At 16, a sixteenth of format 2's digests.
LINK_RECORDS_MAX = 16
LENGTH_MASK = 0x3FFF_FFFF
# Segments are rolled at this size so recovery reads and checks a bounded amount per file
# and old segments can be archived whole. 64 MiB is ~500k decisions: minutes of rush hour.
SEGMENT_BYTES_MAX = 64 * 1024 * 1024
# No record we write comes near this; a larger length field is corruption, not data.
RECORD_BYTES_MAX = 1024 * 1024
SUFFIX = ".journal"


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SUFFIX}"


def segment_header(first_index: int, prev_chain: bytes = GENESIS_CHAIN) -> bytes:
    return HEADER.pack(MAGIC, FORMAT_VERSION, first_index, prev_chain)


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + SUFFIX))


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hashlib.blake2b:
    # Copies of the keyed state skip hashing the key block again for every chain value (a
    # fifth of the chain's cost, which a restart pays per replayed link).
    return hashlib.blake2b(key=key, digest_size=CHAIN_SIZE)


def chain_next(key: bytes, prev_chain: bytes, index: int, payload: bytes) -> bytes:
    """Format 2's chain value of record `index` (one record, one digest)."""
    h = _keyed(key).copy()
    h.update(prev_chain)
    h.update(_INDEX.pack(index))
    h.update(payload)
    return h.digest()


def link_start(key: bytes, prev_chain: bytes, first_index: int) -> hashlib.blake2b:
    """Format 3: the hash of a link before its records. Each record then goes in as
    `update(LINK_LENGTH.pack(len(payload)))` and `update(payload)`, and the link's chain
    value is `digest()`. The writer and every reader do that inline: a method call per
    record made reading one half as slow again (3.0 against 2.0 µs)."""
    h = _keyed(key).copy()
    h.update(prev_chain + _INDEX.pack(first_index))
    return h


def encode_records(
    records: Iterable[Record], first_index: int, prev_chain: bytes, key: bytes
) -> tuple[bytes, int, bytes, int]:
    """The bytes of these records as they go on disk (one append), how many there were, the
    chain value after them, and the offset of the last record's header (-1 when none)."""
    parts: list[bytes] = []
    offset = 0
    count = 0
    pack = RECORD_HEADER.pack
    encode = encoder.encode
    crc32 = zlib.crc32
    pack_length = LINK_LENGTH.pack
    chain = prev_chain
    link = None
    payload = b""
    for record in records:
        if count:  # the previous record's header, now that it is known whether it ends a link
            if count % LINK_RECORDS_MAX:
                parts.append(pack(len(payload), crc32(payload), NO_CHAIN))
            else:
                assert link is not None
                chain = link.digest()
                link = None
                parts.append(pack(len(payload) | LINK_END, crc32(payload), chain))
            parts.append(payload)
            offset += RECORD_HEADER.size + len(payload)
        if link is None:
            link = link_start(key, chain, first_index + count)
        payload = encode(record)
        link.update(pack_length(len(payload)))
        link.update(payload)
        count += 1
    if link is None:
        return b"", 0, prev_chain, -1
    chain = link.digest()
    parts.append(pack(len(payload) | LINK_END, crc32(payload), chain))
    parts.append(payload)
    return b"".join(parts), count, chain, offset


def mark_group_end(chunk: bytes, record_offset: int) -> bytes:
    """The chunk with the group-end bit set on the record at `record_offset`."""
    marked = bytearray(chunk)
    marked[record_offset] |= GROUP_END >> 24
    return bytes(marked)


class RawRecord(NamedTuple):
    """A tuple, not a frozen dataclass: made once per record read, and three times faster
    to make."""

    offset: int  # of its header in the segment
    payload_start: int
    length: int
    chain: bytes
    group_end: bool
    link_end: bool  # format 3's mark; in a format-2 segment every record ends a link


@dataclass(frozen=True)
class Damage:
    offset: int
    problem: str


def never_written(data: bytes, offset: int) -> bool:
    """Whether everything from `offset` on is zeros: preallocated space the writer has not
    reached (no record is all zeros: its length field is never 0)."""
    return data.count(0, offset) == len(data) - offset


def scan_records(data: bytes, start: int) -> Iterator[RawRecord | Damage]:
    """Every record whose bytes are whole and whose CRC matches, from `start`; a Damage
    item ends the scan where the bytes stop making sense."""
    offset = start
    size = len(data)
    while offset < size:
        if size - offset < RECORD_HEADER.size:
            yield Damage(offset, "partial record header")
            return
        length_field, crc, chain = RECORD_HEADER.unpack_from(data, offset)
        length = length_field & LENGTH_MASK
        # No record encodes to zero bytes, and CRC-32 of nothing is 0: without this check a
        # zero-filled tail (file size extended, data never written) would pass the checksum.
        if not 0 < length <= RECORD_BYTES_MAX:
            yield Damage(offset, f"record length {length} outside 1..{RECORD_BYTES_MAX}")
            return
        begin = offset + RECORD_HEADER.size
        end = begin + length
        if end > size:
            yield Damage(offset, "partial record payload")
            return
        if zlib.crc32(data[begin:end]) != crc:
            yield Damage(offset, "checksum mismatch")
            return
        yield RawRecord(
            offset,
            begin,
            length,
            chain,
            bool(length_field & GROUP_END),
            bool(length_field & LINK_END),
        )
        offset = end
