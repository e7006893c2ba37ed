"""The journal's on-disk format: format 3's chain links checked against the formula in
segment.py computed here from scratch, and format-2 journals (a chain value per record)
still read, verified, tallied and continued."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from settlement.errors import JournalUnreadable
from settlement.tally import SegmentJob, tally_segment
from switch.journal import Record, recover
from switch.journal.records import encoder
from switch.journal.segment import (
    FORMAT_VERSION,
    GROUP_END,
    HEADER,
    LINK_END,
    LINK_RECORDS_MAX,
    RawRecord,
    encode_records,
    mark_group_end,
    scan_records,
    segment_header,
    segment_paths,
)
from switch.journal.verify import verify
from tests.journal.test_journal import decisions, writing

KEY = bytes(range(32))
ZERO = bytes(16)


def blake(*parts: bytes) -> bytes:
    return hashlib.blake2b(b"".join(parts), key=KEY, digest_size=16).digest()


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def records_of(data: bytes) -> list[RawRecord]:
    items = list(scan_records(data, HEADER.size))
    records = [item for item in items if isinstance(item, RawRecord)]
    assert records == items, "damage in a segment the test built whole"
    return records


def write_format2(path: Path, records: list[Record], *, groups: int, tail_zeros: int = 0) -> bytes:
    """A format-2 segment of `records` in `groups` write groups, built from the format's
    definition rather than from the code that now reads it; returns its last chain value."""
    chain = ZERO
    out = [b"OCJ1" + u32(2) + u64(0) + ZERO]
    per_group = -(-len(records) // groups)
    for index, record in enumerate(records):
        payload = encoder.encode(record)
        chain = blake(chain, u64(index), payload)
        ends_group = index % per_group == per_group - 1 or index == len(records) - 1
        length = len(payload) | (GROUP_END if ends_group else 0)
        out.append(u32(length) + u32(zlib.crc32(payload)) + chain + payload)
    path.write_bytes(b"".join(out) + bytes(tail_zeros))
    return chain


def test_an_append_is_chained_in_links_of_at_most_sixteen_records() -> None:
    records = decisions(0, 2 * LINK_RECORDS_MAX + 8)
    data, count, last_chain, _offset = encode_records(records, 100, ZERO, KEY)
    items = records_of(HEADER.pack(b"OCJ1", FORMAT_VERSION, 100, ZERO) + data)
    assert count == len(items) == 40
    ends = [number for number, item in enumerate(items) if item.link_end]
    assert ends == [15, 31, 39]
    chain, first = ZERO, 0
    for end in ends:
        body = b"".join(
            u32(item.length) + data[item.payload_start - HEADER.size :][: item.length]
            for item in items[first : end + 1]
        )
        chain = blake(chain, u64(100 + first), body)
        assert items[end].chain == chain
        assert all(item.chain == ZERO for item in items[first:end])
        first = end + 1
    assert last_chain == chain


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("chain_zeroed", "named", "problem"),
    [
        (False, 15, "record 15: a chain value or group end inside a link"),
        (True, 0, "one of records 0-15: no link end where one must be"),
    ],
)
async def test_a_cleared_link_end_is_caught_and_named(
    tmp_path: Path, chain_zeroed: bool, named: int, problem: str
) -> None:
    async with writing(tmp_path) as journal:
        journal.append(decisions(0, 40))
    async with writing(tmp_path) as journal:
        journal.append(decisions(40, 2))  # a later group: the damage is not a torn tail
    [segment] = segment_paths(tmp_path)
    data = bytearray(segment.read_bytes())
    link_end = records_of(bytes(data))[15]
    assert link_end.link_end
    data[link_end.offset] &= ~(LINK_END >> 24) & 0xFF
    if chain_zeroed:
        data[link_end.offset + 8 : link_end.offset + 24] = ZERO
    segment.write_bytes(bytes(data))

    [finding] = verify(tmp_path, b"").findings
    assert finding.record == named
    assert finding.problem.startswith(problem)


@pytest.mark.anyio
async def test_a_format_2_journal_is_read_verified_and_continued_in_a_format_3_segment(
    tmp_path: Path,
) -> None:
    old = decisions(0, 30)
    v2 = tmp_path / "00000000000000000000.journal"
    last_chain = write_format2(v2, old, groups=3, tail_zeros=4096)  # a crash left zeros
    report = recover(tmp_path, lambda _i, _r: None, KEY)
    assert (report.next_index, report.last_chain) == (30, last_chain)

    async with writing(tmp_path, report) as journal:
        journal.append(decisions(30, 20))
    assert [path.name for path in segment_paths(tmp_path)] == [
        "00000000000000000000.journal",
        "00000000000000000030.journal",
    ]
    assert not v2.read_bytes().endswith(bytes(16))  # cut to its records before the next
    assert HEADER.unpack_from(segment_paths(tmp_path)[1].read_bytes())[1] == FORMAT_VERSION

    replayed: list[tuple[int, Record]] = []
    recover(tmp_path, lambda index, record: replayed.append((index, record)), KEY)
    assert replayed == list(enumerate(decisions(0, 50)))
    assert verify(tmp_path, KEY).ok

    # The settlement tally reads both formats, and the two segments chain to each other.
    tallies = [
        tally_segment(SegmentJob(str(path), first, first, 10**9, KEY))
        for path, first in zip(segment_paths(tmp_path), (0, 30), strict=True)
    ]
    assert [(t.records, t.financial, t.movement_fen) for t in tallies] == [
        (30, 30, 30 * 200),
        (20, 20, 20 * 200),
    ]
    assert tallies[0].end_index == 30 and tallies[0].end_chain == tallies[1].header_chain


def test_a_format_2_segment_still_names_the_record_altered(tmp_path: Path) -> None:
    v2 = tmp_path / "00000000000000000000.journal"
    write_format2(v2, decisions(0, 30), groups=3)
    data = bytearray(v2.read_bytes())
    target = records_of(bytes(data))[7]
    data[target.payload_start + 2] ^= 0x01
    payload = bytes(data[target.payload_start : target.payload_start + target.length])
    struct.pack_into(">I", data, target.offset + 4, zlib.crc32(payload))  # re-checksummed
    v2.write_bytes(bytes(data))

    [finding] = verify(tmp_path, KEY).findings
    assert (finding.record, finding.offset) == (7, target.offset)
    assert finding.problem.startswith("record 7: chain value does not match")


@pytest.mark.anyio
async def test_an_empty_format_2_last_segment_is_replaced(tmp_path: Path) -> None:
    v2 = tmp_path / "00000000000000000000.journal"
    write_format2(v2, [], groups=1)
    report = recover(tmp_path, lambda _i, _r: None, KEY)
    async with writing(tmp_path, report) as journal:
        journal.append(decisions(0, 3))
    [segment] = segment_paths(tmp_path)
    assert HEADER.unpack_from(segment.read_bytes())[1] == FORMAT_VERSION
    assert verify(tmp_path, KEY).ok


def test_a_tally_ending_inside_a_link_checks_the_whole_link(tmp_path: Path) -> None:
    data, _count, _chain, last_offset = encode_records(decisions(0, 20), 0, ZERO, KEY)
    segment = tmp_path / "00000000000000000000.journal"
    segment.write_bytes(segment_header(0) + mark_group_end(data, last_offset))

    tally = tally_segment(SegmentJob(str(segment), 0, 0, 9, KEY))
    assert tally.records == 10  # records 0..9 tallied
    assert tally.end_index == LINK_RECORDS_MAX  # their link, 0..15, read and checked whole

    altered = bytearray(segment.read_bytes())
    item = records_of(bytes(altered))[12]  # after the range, inside its link
    altered[item.payload_start + 2] ^= 0x01
    payload = bytes(altered[item.payload_start : item.payload_start + item.length])
    struct.pack_into(">I", altered, item.offset + 4, zlib.crc32(payload))
    segment.write_bytes(bytes(altered))
    with pytest.raises(JournalUnreadable, match="one of records 0-15, ending at byte"):
        tally_segment(SegmentJob(str(segment), 0, 0, 9, KEY))
