"""Journal file format.

A journal is a directory of segment files named by the index of their first record
(`00000000000000000000.journal`). A segment is

    header  16 bytes: magic b"OCJ1", u32 format version, u64 index of its first record
    record* u32 payload length, u32 CRC-32 of the payload, payload (records.py, MessagePack)

all integers big-endian. A record's index is its position in the whole journal, counted
from 0.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from switch.journal.records import Record, encoder

MAGIC = b"OCJ1"
FORMAT_VERSION = 1
HEADER = struct.Struct(">4sIQ")
RECORD_HEADER = struct.Struct(">II")
# Segments are rolled at this size so recovery reads and checks a bounded amount per file
# and old segments can be archived whole. 64 MiB is ~600k decisions: minutes of rush hour.
SEGMENT_BYTES_MAX = 64 * 1024 * 1024
# No record we write comes near this; a larger length field is corruption, not data.
RECORD_BYTES_MAX = 1024 * 1024
SUFFIX = ".journal"


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SUFFIX}"


def segment_header(first_index: int) -> bytes:
    return HEADER.pack(MAGIC, FORMAT_VERSION, first_index)


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + SUFFIX))


def encode_records(records: Iterable[Record]) -> tuple[bytes, int]:
    """The bytes of these records as they go on disk, and how many there were."""
    parts = []
    count = 0
    pack = RECORD_HEADER.pack
    encode = encoder.encode
    crc32 = zlib.crc32
    for record in records:
        payload = encode(record)
        parts.append(pack(len(payload), crc32(payload)))
        parts.append(payload)
        count += 1
    return b"".join(parts), count
