"""Reading the journal back: at start (`recover`) and on an operator's demand (`verify`).

A crash can leave the last segment with a torn tail: a record whose bytes did not all reach
the disk. Such a record was never acknowledged (answers wait for fdatasync), so recovery
truncates it and says so loudly. A bad record anywhere else, or any record whose chain
value is wrong (altered, deleted, inserted, moved), is corruption or tampering, and the
switch refuses to start rather than serve from a history it cannot trust.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from switch.durable import fsync_directory
from switch.errors import JournalCorrupt, SnapshotMismatch
from switch.journal.records import Record, decoder
from switch.journal.segment import (
    GENESIS_CHAIN,
    GROUP_END,
    HEADER,
    LENGTH_MASK,
    LINK_LENGTH,
    LINK_RECORDS_MAX,
    MAGIC,
    NO_CHAIN,
    READABLE_VERSIONS,
    RECORD_BYTES_MAX,
    RECORD_HEADER,
    Damage,
    chain_next,
    link_start,
    never_written,
    scan_records,
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
    last_chain: bytes  # chain value of the last record (what the next one chains from)
    chain_key: bytes


@dataclass(frozen=True)
class SegmentRead:
    """What one segment holds, read and checked as far as it can be."""

    payloads: list[bytes]  # intact records in order, from the segment's first index
    intact_end: int  # byte offset where the intact prefix ends
    problem: str | None  # why it ended early: None when it reached the end of the file
    tampered: bool  # the problem is a wrong chain value (bytes intact), not a torn write
    chain: bytes  # chain value after the last intact record (format 3: its link's)
    # Zeros after the last record: preallocated space never written (segment.py). Normal
    # in the last segment after a crash; anywhere else the segment was not cut when the
    # next one began.
    unwritten_bytes: int = 0
    # Where `journal verify` points for a problem in intact bytes: (byte offset, record
    # index) of the damaged record, or of the first record of the link whose chain value
    # fails. None: at the intact end, the start of a torn group.
    problem_at: tuple[int, int] | None = None


def read_segment(
    data: bytes, first_index: int, prev_chain: bytes, key: bytes, start: int = HEADER.size
) -> SegmentRead:
    """The records of a segment from byte `start` (record `first_index`, chained from
    `prev_chain`), checked, up to the first problem.

    A torn write ends the intact part at the start of its group, not at the damaged record
    (nor at the last whole record, when the tear falls between two records):
    the records of one group were appended together (a decision and the reversal it owes a
    bank, say), none of them was acknowledged, and a replay must see all or none of them.
    Groups never span segments (the writer rolls before a group), so the group starts
    after the last group-end mark in this segment, or at `start`."""
    per_record = HEADER.unpack_from(data, 0)[1] == 2  # format 2: a chain value per record
    payloads: list[bytes] = []
    index = first_index
    # Where the last checked link ends, and the last whole group: records, byte offset and
    # chain value. Records after `checked` are intact but not yet proven by a chain value.
    checked = whole = (0, start, prev_chain)
    link = None  # the hash of the link being read (format 3; segment.link_start)
    pack_length = LINK_LENGTH.pack
    end = len(data)
    for item in scan_records(data, start):
        if isinstance(item, Damage):
            if never_written(data, item.offset):
                end = item.offset
                break
            if _intact_after(data, item.offset):
                damage = f"record {index}: {item.problem}, but the records after it are intact"
                return _tampered(payloads, checked, damage, (item.offset, index))
            return _torn(payloads, whole, item.problem)
        payload = data[item.payload_start : item.payload_start + item.length]
        if per_record:
            expected = chain_next(key, checked[2], index, payload)
        else:
            if link is None:
                link = link_start(key, checked[2], index)
            link.update(pack_length(item.length))
            link.update(payload)
            if not item.link_end:
                if item.chain != NO_CHAIN or item.group_end:
                    problem = f"record {index}: a chain value or group end inside a link"
                    at = (item.offset, index)
                    return _bad_link(data, item.offset, payloads, checked, whole, problem, at)
                if index - checked[0] - first_index + 1 == LINK_RECORDS_MAX:
                    first = checked[0] + first_index
                    problem = (
                        f"one of records {first}-{index}: no link end where one must be "
                        f"(links are at most {LINK_RECORDS_MAX} records)"
                    )
                    at = (checked[1], first)
                    return _bad_link(data, item.offset, payloads, checked, whole, problem, at)
                payloads.append(payload)
                index += 1
                continue
            expected = link.digest()
            link = None
        if item.chain != expected:
            first = checked[0] + first_index
            which = f"record {index}" if first == index else f"one of records {first}-{index}"
            problem = (
                f"{which}: chain value does not match: altered, deleted, inserted or moved "
                "(or the journal key is not this journal's)"
            )
            at = (checked[1], first)
            return _bad_link(data, item.offset, payloads, checked, whole, problem, at)
        payloads.append(payload)
        index += 1
        checked = (len(payloads), item.payload_start + item.length, expected)
        if item.group_end:
            whole = checked
    if whole[0] != len(payloads):
        # Whole records, but not the group's last one: the tear fell between two records.
        return _torn(payloads, whole, f"record {index}: missing, its group unfinished")
    return SegmentRead(payloads, end, None, False, whole[2], len(data) - end)


def _bad_link(
    data: bytes,
    offset: int,
    payloads: list[bytes],
    checked: tuple[int, int, bytes],
    whole: tuple[int, int, bytes],
    problem: str,
    at: tuple[int, int],
) -> SegmentRead:
    """Intact bytes the chain does not prove, found at the record at `offset`; `at` is
    (byte offset, index) of the record `journal verify` points at: the damaged one, or
    the first of its link."""
    # In the last group a sector holding only this header may have been lost in a crash;
    # anywhere before it, intact bytes with a wrong chain value are tampering.
    if _intact_after(data, offset):
        return _tampered(payloads, checked, problem, at)
    return _torn(payloads, whole, problem)


def _tampered(
    payloads: list[bytes], checked: tuple[int, int, bytes], problem: str, at: tuple[int, int]
) -> SegmentRead:
    records, end, chain = checked
    return SegmentRead(payloads[:records], end, problem, True, chain, problem_at=at)


def _torn(payloads: list[bytes], whole: tuple[int, int, bytes], problem: str) -> SegmentRead:
    records, end, chain = whole
    dropped = len(payloads) - records
    if dropped:
        problem += f"; {dropped} intact records before it in its group dropped with it"
    return SegmentRead(payloads[:records], end, problem, False, chain)


def _skip_to(
    data: bytes, first_index: int, resume_index: int, resume_chain: bytes
) -> tuple[int, bool]:
    """The byte offset of record `resume_index` in a segment starting at `first_index`,
    found by walking record headers only, with the snapshot's chain value checked against
    the record before it, and whether that offset lies inside a write group (the record
    before it does not end one). The skipped records are not re-verified: `journal verify`
    does that; a snapshot is there to make a restart fast."""
    offset = HEADER.size
    if resume_index == first_index:
        if HEADER.unpack_from(data, 0)[3] != resume_chain:
            raise SnapshotMismatch("the segment does not continue the snapshot's chain")
        return offset, False  # groups never span segments
    length_field = GROUP_END
    for index in range(first_index, resume_index):
        if len(data) - offset < RECORD_HEADER.size:
            raise SnapshotMismatch(f"the journal ends before the snapshot's record {resume_index}")
        length_field, _crc, stored_chain = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER.size + (length_field & LENGTH_MASK)
        if offset > len(data):
            raise SnapshotMismatch(f"the journal ends before the snapshot's record {resume_index}")
        if index == resume_index - 1 and stored_chain != resume_chain:
            raise SnapshotMismatch(f"record {index} does not have the snapshot's chain value")
    return offset, not length_field & GROUP_END


def _intact_after(data: bytes, offset: int) -> bool:
    """Whether damage at `offset` lies in a group that was synced and acknowledged: the
    damaged record's group ends, and a complete later group follows. A crash tears only
    the last group, whose sectors may persist in any order, so genuine records after damage
    prove nothing by themselves; a second group end after it does. Telling the two apart
    keeps recovery from truncating acknowledged records as if never written."""
    if len(data) - offset < RECORD_HEADER.size:
        return False
    length_field, _crc, _chain = RECORD_HEADER.unpack_from(data, offset)
    length = length_field & LENGTH_MASK
    following = offset + RECORD_HEADER.size + length
    if not 0 < length <= RECORD_BYTES_MAX or following > len(data):
        return False  # the damage reaches the length itself: cannot walk past it
    group_ends = 1 if length_field & GROUP_END else 0
    for item in scan_records(data, following):
        if isinstance(item, Damage):
            return False
        group_ends += item.group_end
        if group_ends >= 2:
            return True
    return False


def check_header(path: Path, data: bytes, next_index: int, prev_chain: bytes) -> None:
    magic, version, first_index, header_chain = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version not in READABLE_VERSIONS:
        raise JournalCorrupt(f"{path.name}: not a journal segment of a format this version reads")
    if first_index != next_index:
        raise JournalCorrupt(
            f"{path.name}: starts at record {first_index}, expected {next_index} "
            "(a segment is missing, or was renamed)"
        )
    if header_chain != prev_chain:
        raise JournalCorrupt(f"{path.name}: does not chain from the previous segment's last record")


def recover(
    directory: Path,
    apply: Callable[[int, Record], None],
    chain_key: bytes = b"",
    resume: tuple[int, bytes] | None = None,
) -> RecoveryReport:
    """Replay every intact record through `apply(index, record)` in order; truncate a torn
    tail of the last segment; raise JournalCorrupt for damage or tampering anywhere else.
    `chain_key` is the journal key from the key store (empty: an unkeyed chain, for tools
    and tests that need no tamper evidence). `resume` = (index, chain value before it), from
    a snapshot: records before it are checked against the chain but not applied, and
    segments wholly before it are not read; SnapshotMismatch if the journal does not hold
    that record with that chain value."""
    paths = segment_paths(directory)
    next_index = 0
    chain = GENESIS_CHAIN
    truncated_bytes = 0
    truncated_segment = None
    last_size = 0
    resume_index, resume_chain = resume if resume is not None else (0, GENESIS_CHAIN)
    first = 0
    if resume_index > 0:
        starts = [number for number, path in enumerate(paths) if int(path.stem) <= resume_index]
        if not starts:
            raise SnapshotMismatch(f"no journal segment holds record {resume_index}")
        first = starts[-1]
        next_index = int(paths[first].stem)
    resumed = resume_index == 0
    for number, path in enumerate(paths[first:], start=first):
        last = number == len(paths) - 1
        data = path.read_bytes()
        if not resumed and len(data) >= HEADER.size:
            chain = HEADER.unpack_from(data, 0)[3]  # the skipped segments are not re-read
        if len(data) < HEADER.size:
            if last and next_index == int(path.stem):
                # Crashed while creating the segment: nothing in it was acknowledged.
                log.error("journal: segment %s has a torn header; rewriting it", path.name)
                truncated_bytes, truncated_segment = len(data), path.name
                path.unlink()
                # Records appended after this point go to the previous segment; should the
                # removal not survive a crash, the stale name would then read as a gap.
                fsync_directory(directory)
                paths.pop()
                break
            raise JournalCorrupt(f"{path.name}: shorter than its header")
        check_header(path, data, next_index, chain)
        start, inside_group = HEADER.size, False
        if not resumed:
            start, inside_group = _skip_to(data, next_index, resume_index, resume_chain)
            next_index, chain, resumed = resume_index, resume_chain, True
        read = read_segment(data, next_index, chain, chain_key, start)
        if read.problem is not None and (read.tampered or not last):
            raise JournalCorrupt(f"{path.name} at byte {read.intact_end}: {read.problem}")
        if read.unwritten_bytes and not last:
            raise JournalCorrupt(
                f"{path.name} at byte {read.intact_end}: {read.unwritten_bytes} zero bytes "
                "after its last record, in a segment before the last"
            )
        if read.problem is not None and inside_group and read.intact_end == start:
            # The snapshot was taken inside the group this torn write belongs to: it holds
            # records of a group that must now go whole. An older snapshot, or a full
            # replay, drops that group cleanly.
            raise SnapshotMismatch(f"the snapshot's record {resume_index} is in a torn group")
        for payload in read.payloads:
            try:
                record = decoder.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise JournalCorrupt(
                    f"{path.name} record {next_index}: checksum intact but undecodable: {exc}"
                ) from exc
            apply(next_index, record)
            next_index += 1
        chain = read.chain
        last_size = read.intact_end
        if read.problem is not None:
            # Removed from the file: the torn write and any preallocated space after it.
            truncated_bytes = len(data) - read.intact_end
            truncated_segment = path.name
            log.error(
                "journal: TORN TAIL in %s at byte %d (%s): truncating %d bytes that were "
                "never acknowledged; %d records recovered",
                path.name,
                read.intact_end,
                read.problem,
                truncated_bytes,
                next_index,
            )
            with open(path, "r+b") as file:
                file.truncate(read.intact_end)
                os.fsync(file.fileno())
    if not resumed:
        raise SnapshotMismatch(f"the journal ends before the snapshot's record {resume_index}")
    return RecoveryReport(
        records=next_index,
        next_index=next_index,
        segments=len(paths),
        truncated_bytes=truncated_bytes,
        truncated_segment=truncated_segment,
        last_segment=paths[-1] if paths else None,
        last_segment_bytes=last_size,
        last_chain=chain,
        chain_key=chain_key,
    )
