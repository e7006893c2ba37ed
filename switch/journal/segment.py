"""Journal file format (version 2: hash-chained).

A journal is a directory of segment files named by the index of their first record
(`00000000000000000000.journal`). A segment is

    header  32 bytes: magic b"OCJ1", u32 format version (2), u64 index of its first record,
            16-byte chain value before that record
    record* u32 payload length (its top bit set on the last record of each write group),
            u32 CRC-32 of the payload, 16-byte chain value, payload (records.py, MessagePack)

all integers big-endian. The segment being written is preallocated (writer.py), so
after a crash its file may run on past the last record in zeros: space never written,
which ends the segment as the file's end would. Only the last segment may have such a
tail; the writer cuts a segment to its records before it starts the next.

A record's index is its position in the whole journal, counted from 0. The chain value
of record i is

    keyed BLAKE2b-128(key = the journal key, chain(i-1) || u64 i || payload)

with chain(-1) = 16 zero bytes. The CRC tells a torn or decayed record (a crash, a bad
sector); the chain tells a record that is intact but not where it was written — altered and
re-checksummed, deleted, inserted or moved. Without the journal key (keys.json) the chain
cannot be forged, so the journal is tamper-evident, not merely checksummed.

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
FORMAT_VERSION = 2
CHAIN_SIZE = 16
GENESIS_CHAIN = bytes(CHAIN_SIZE)
HEADER = struct.Struct(f">4sIQ{CHAIN_SIZE}s")
RECORD_HEADER = struct.Struct(f">II{CHAIN_SIZE}s")
_INDEX = struct.Struct(">Q")
GROUP_END = 0x8000_0000
LENGTH_MASK = 0x7FFF_FFFF
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
    return hashlib.blake2b(key=key, digest_size=CHAIN_SIZE)


def chain_next(key: bytes, prev_chain: bytes, index: int, payload: bytes) -> bytes:
    # A copy of the keyed state skips hashing the key block again for every record (a
    # fifth of the chain's cost, which a restart pays per replayed record).
    h = _keyed(key).copy()
    h.update(prev_chain)
    h.update(_INDEX.pack(index))
    h.update(payload)
    return h.digest()


def encode_records(
    records: Iterable[Record], first_index: int, prev_chain: bytes, key: bytes
) -> tuple[bytes, int, bytes, int]:
    """The bytes of these records as they go on disk, how many there were, the chain value
    after the last, and the offset of the last record's header (-1 when none)."""
    parts = []
    last_offset = -1
    offset = 0
    index = first_index
    pack = RECORD_HEADER.pack
    encode = encoder.encode
    crc32 = zlib.crc32
    chain = prev_chain
    for record in records:
        payload = encode(record)
        chain = chain_next(key, chain, index, payload)
        parts.append(pack(len(payload), crc32(payload), chain))
        parts.append(payload)
        last_offset = offset
        offset += RECORD_HEADER.size + len(payload)
        index += 1
    return b"".join(parts), index - first_index, chain, last_offset


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
        yield RawRecord(offset, begin, length, chain, bool(length_field & GROUP_END))
        offset = end
