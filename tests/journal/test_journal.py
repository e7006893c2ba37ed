"""The journal against real files: group commit, durability callbacks, segment rolls, and
recovery from every way a crash or a bad disk can leave the files.

Every test writes its files with the real writer, so the tests are async and run on uvloop
and on trio; fakes stand in for os.write and os.fdatasync (or the journal's `sync` hook)
where a test must slow or break the disk.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from switch.errors import JournalCorrupt, JournalFailed, SnapshotMismatch
from switch.journal import Journal, Record, RecoveryReport, recover, writer
from switch.journal.records import CardStatusChanged, Decision
from switch.journal.segment import (
    GENESIS_CHAIN,
    HEADER,
    RECORD_HEADER,
    encode_records,
    never_written,
    segment_header,
    segment_name,
    segment_paths,
)
from switch.journal.verify import verify
from switch.stats import BATCH_SIZE_BUCKETS

# A segment limit that holds only a few records, so a few dozen records roll several times.
SMALL_SEGMENT_BYTES = 256


def decision(index: int) -> Decision:
    """A distinct, realistic record for journal position `index`."""
    return Decision(
        time_ms=1_796_000_000_000 + index,
        terminal_time_ms=1_796_000_000_000 + index - 5,
        terminal_id="G0001",
        seq=index + 1,
        kind="tap",
        card="X00000001",
        amount_fen=0,
        original_seq=0,
        code="00",
        moved_fen=-200,
        balance_fen=1_000_000 - 200 * (index + 1),
        reference=index + 1,
    )


def decisions(first: int, count: int) -> list[Record]:
    return [decision(index) for index in range(first, first + count)]


def encoded_size(record: Record) -> int:
    return len(encode_records([record], 0, GENESIS_CHAIN, b"")[0])


def recover_all(directory: Path) -> tuple[list[tuple[int, Record]], RecoveryReport]:
    replayed: list[tuple[int, Record]] = []
    report = recover(directory, lambda index, record: replayed.append((index, record)))
    return replayed, report


def ignore(_index: int, _record: Record) -> None:
    pass


@asynccontextmanager
async def writing(
    directory: Path,
    report: RecoveryReport | None = None,
    *,
    segment_bytes_max: int = 1 << 20,
    sync: Callable[[int], None] | None = None,
) -> AsyncIterator[Journal]:
    """A journal with its writer running; everything appended is durable on exit."""
    if report is None:
        report = recover(directory, ignore)
    journal = Journal(directory, report, segment_bytes_max=segment_bytes_max, sync=sync)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            yield journal
            await journal.flush()
            group.cancel_scope.cancel()
    finally:
        journal.close()


async def run_writer_until_flushed(journal: Journal) -> None:
    """Start the writer on a journal with appends waiting, and stop it once all is durable."""
    async with anyio.create_task_group() as group:
        group.start_soon(journal.run)
        await journal.flush()
        group.cancel_scope.cancel()


async def write_journal(
    directory: Path, groups: list[list[Record]], *, segment_bytes_max: int = 1 << 20
) -> None:
    """Write each of `groups` as its own group (durable before the next is appended)."""
    async with writing(directory, segment_bytes_max=segment_bytes_max) as journal:
        for group in groups:
            await journal.wait_durable(journal.append(group))


def journal_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "onecard.journal" and r.levelno == logging.ERROR
    ]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


class RecordingFdatasync:
    """os.fdatasync that syncs for real, then notes the call in a shared log."""

    def __init__(self, log: list[str], real: Callable[[int], None]) -> None:
        self.log = log
        self.real = real

    def __call__(self, fd: int) -> None:
        self.real(fd)
        self.log.append("fdatasync")


class GatedFdatasync:
    """os.fdatasync whose first call holds the writer's thread until `release` is set,
    so a test can append while a group is being synced."""

    def __init__(self, real: Callable[[int], None]) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait()
        self.real(fd)


class FailingFdatasync:
    """os.fdatasync on a disk that has gone bad."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        raise OSError(errno.EIO, "Input/output error")


# -- appending and group commit ----------------------------------------------------------


@pytest.mark.anyio
async def test_appended_records_recover_in_order_with_their_indices(tmp_path: Path) -> None:
    records: list[Record] = [*decisions(0, 3), CardStatusChanged(5, "X00000002", "lost", "call")]
    async with writing(tmp_path) as journal:
        assert journal.append(records[:1]) == 1
        assert journal.append(records[1:]) == 4
        assert journal.append([]) == 4  # nothing to add is not an error
        await journal.flush()
        assert journal.durable_position == 4

    replayed, report = recover_all(tmp_path)

    assert replayed == list(enumerate(records))
    assert (report.records, report.next_index, report.segments) == (4, 4, 1)
    assert (report.truncated_bytes, report.truncated_segment) == (0, None)


@pytest.mark.anyio
async def test_a_reopened_journal_continues_the_index_numbering(tmp_path: Path) -> None:
    await write_journal(tmp_path, [decisions(0, 3)])
    async with writing(tmp_path) as journal:
        assert journal.appended_position == journal.durable_position == 3
        assert journal.append(decisions(3, 2)) == 5

    replayed, _report = recover_all(tmp_path)
    assert replayed == list(enumerate(decisions(0, 5)))


@pytest.mark.anyio
async def test_appends_before_the_writer_runs_are_written_as_one_group(tmp_path: Path) -> None:
    journal = Journal(tmp_path, recover(tmp_path, ignore))
    try:
        positions = [journal.append([record]) for record in decisions(0, 10)]
        assert positions == list(range(1, 11))
        before = journal.statistics()
        assert (before.appended_position, before.durable_position) == (10, 0)
        assert before.pending_bytes > 0
        await run_writer_until_flushed(journal)
    finally:
        journal.close()

    after = journal.statistics()
    assert after.groups_total == 1
    assert (after.appended_position, after.durable_position, after.pending_bytes) == (10, 10, 0)
    assert after.bytes_written_total == before.pending_bytes
    [segment] = segment_paths(tmp_path)
    assert segment.stat().st_size == HEADER.size + after.bytes_written_total
    histogram = journal.group_records
    assert (histogram.count, histogram.total) == (1, 10)
    assert histogram.counts[bisect_left(BATCH_SIZE_BUCKETS, 10)] == 1


@pytest.mark.anyio
async def test_appends_during_a_sync_gather_into_the_next_group(tmp_path: Path) -> None:
    gate = GatedFdatasync(os.fdatasync)
    async with writing(tmp_path, sync=gate) as journal:
        try:
            journal.append(decisions(0, 1))
            await anyio.to_thread.run_sync(gate.entered.wait)  # group 1 is being synced
            for record in decisions(1, 5):
                journal.append([record])
            assert journal.durable_position == 0
        finally:
            gate.release.set()  # a held writer thread would hang the test on failure
        await journal.flush()

    assert journal.statistics().groups_total == 2
    assert (journal.group_records.count, journal.group_records.total) == (2, 6)
    assert gate.calls == 2
    replayed, _report = recover_all(tmp_path)
    assert replayed == list(enumerate(decisions(0, 6)))


@pytest.mark.anyio
async def test_the_pending_bytes_limit_marks_the_journal_congested(tmp_path: Path) -> None:
    record = decision(0)
    journal = Journal(
        tmp_path, recover(tmp_path, ignore), pending_bytes_max=2 * encoded_size(record)
    )
    try:
        journal.append([record, record])
        assert not journal.congested  # at the limit, not over it
        journal.append([record])
        assert journal.congested
        await run_writer_until_flushed(journal)
        assert not journal.congested
    finally:
        journal.close()


# -- durability notifications ------------------------------------------------------------


@pytest.mark.anyio
async def test_call_when_durable_fires_after_the_sync_in_registration_order(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    sync = RecordingFdatasync(log, os.fdatasync)
    journal = Journal(tmp_path, recover(tmp_path, ignore), sync=sync)
    [segment] = segment_paths(tmp_path)

    def note(name: str, position: int) -> Callable[[], None]:
        def callback() -> None:
            # What the callback may rely on: the position is durable and its bytes on disk.
            assert journal.durable_position >= position
            replayed, _report = recover_all(tmp_path)
            assert len(replayed) >= position
            log.append(name)

        return callback

    try:
        first = journal.append(decisions(0, 1))
        journal.call_when_durable(first, note("a", first))
        second = journal.append(decisions(1, 2))
        journal.call_when_durable(second, note("b", second))
        journal.call_when_durable(second, note("c", second))
        assert log == []
        # Nothing written before the writer runs.
        assert never_written(segment.read_bytes(), HEADER.size)

        await run_writer_until_flushed(journal)

        assert log == ["fdatasync", "a", "b", "c"]
        journal.call_when_durable(first, note("already durable", first))
        assert log[-1] == "already durable"  # called at once, synchronously
    finally:
        journal.close()


@pytest.mark.anyio
async def test_wait_durable_returns_once_its_position_is_on_disk(tmp_path: Path) -> None:
    journal = Journal(tmp_path, recover(tmp_path, ignore))
    woke: list[int] = []

    async def waiter(position: int) -> None:
        await journal.wait_durable(position)
        woke.append(position)
        replayed, _report = recover_all(tmp_path)
        assert len(replayed) >= position

    try:
        await journal.wait_durable(0)  # already durable: returns without a writer
        first = journal.append(decisions(0, 2))
        second = journal.append(decisions(2, 1))
        async with anyio.create_task_group() as writer:
            async with anyio.create_task_group() as waiters:
                waiters.start_soon(waiter, first)
                waiters.start_soon(waiter, second)
                await anyio.wait_all_tasks_blocked()
                assert woke == []
                writer.start_soon(journal.run)
            writer.cancel_scope.cancel()
    finally:
        journal.close()

    assert sorted(woke) == [first, second]


# -- segments ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_segments_roll_at_the_size_limit_and_recover_in_order(tmp_path: Path) -> None:
    records = decisions(0, 30)
    async with writing(tmp_path, segment_bytes_max=SMALL_SEGMENT_BYTES) as journal:
        for record in records:
            await journal.wait_durable(journal.append([record]))
        segments_total = journal.statistics().segments_total

    paths = segment_paths(tmp_path)
    assert len(paths) >= 3
    assert segments_total == len(paths)
    assert all(path.stat().st_size <= SMALL_SEGMENT_BYTES for path in paths)
    # Each segment is named by, and its header holds, the index of its first record.
    first_indices = [HEADER.unpack_from(path.read_bytes())[2] for path in paths]
    assert [segment_name(index) for index in first_indices] == [path.name for path in paths]
    assert first_indices == sorted(set(first_indices))

    replayed, report = recover_all(tmp_path)
    assert replayed == list(enumerate(records))
    assert (report.segments, report.last_segment) == (len(paths), paths[-1])

    async with writing(tmp_path, report, segment_bytes_max=SMALL_SEGMENT_BYTES) as journal:
        for record in decisions(30, 10):
            await journal.wait_durable(journal.append([record]))
    replayed, report = recover_all(tmp_path)
    assert replayed == list(enumerate(decisions(0, 40)))
    assert report.segments > len(paths)


@pytest.mark.anyio
async def test_a_group_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    big = decisions(1, 10)
    assert sum(map(encoded_size, big)) > SMALL_SEGMENT_BYTES
    await write_journal(
        tmp_path,
        [decisions(0, 1), big, decisions(11, 1)],
        segment_bytes_max=SMALL_SEGMENT_BYTES,
    )

    assert [path.name for path in segment_paths(tmp_path)] == [
        segment_name(0),
        segment_name(1),
        segment_name(11),
    ]
    replayed, _report = recover_all(tmp_path)
    assert replayed == list(enumerate(decisions(0, 12)))


# -- recovery: a torn tail in the last segment ---------------------------------------------


@pytest.mark.anyio
async def test_a_torn_last_group_is_truncated_whole_at_every_byte_and_appends_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The records of one group were appended together and none was acknowledged: a torn
    # write takes all of them, wherever it falls, also exactly between two of them.
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    records = decisions(0, 4)
    await write_journal(pristine, [records[:2], records[2:]])
    [segment] = segment_paths(pristine)
    data = segment.read_bytes()
    second_start = len(data) - encoded_size(records[-1])
    group_start = second_start - encoded_size(records[-2])
    replacement = decision(100)

    for cut in range(group_start + 1, len(data)):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        torn = directory / segment.name
        torn.write_bytes(data[:cut])
        caplog.clear()

        replayed, report = recover_all(directory)

        assert replayed == list(enumerate(records[:2])), cut
        assert (report.next_index, report.last_segment_bytes) == (2, group_start)
        if not any(data[group_start:cut]):
            # Only zeros of the group reached the disk: that reads as preallocated space
            # never written (segment.py), the same records, and nothing to report.
            assert (report.truncated_bytes, report.truncated_segment) == (0, None)
            assert journal_errors(caplog) == []
        else:
            assert report.truncated_bytes == cut - group_start
            assert report.truncated_segment == segment.name
            assert torn.stat().st_size == group_start
            [message] = journal_errors(caplog)
            assert "TORN TAIL" in message
            assert segment.name in message
            damaged_start = group_start if cut < second_start else second_start
            # Zeros from the damaged record on read as the end: its group is unfinished.
            zeros = not any(data[damaged_start:cut])
            within_header = 0 < cut - damaged_start < RECORD_HEADER.size and not zeros
            assert ("partial record header" in message) == within_header, message
            unfinished = cut == second_start or (zeros and damaged_start == second_start)
            assert ("group unfinished" in message) == unfinished, message
            assert ("1 intact records before it" in message) == (cut >= second_start), message

        async with writing(directory, report) as journal:
            assert journal.append([replacement]) == 3
        caplog.clear()
        replayed, report = recover_all(directory)
        assert replayed == list(enumerate([*records[:2], replacement]))
        assert report.truncated_bytes == 0
        assert journal_errors(caplog) == []


@pytest.mark.anyio
async def test_a_flipped_byte_in_the_last_group_reads_as_a_torn_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    records = decisions(0, 4)
    await write_journal(pristine, [records[:1], records[1:]])
    [segment] = segment_paths(pristine)
    size = segment.stat().st_size
    last_start = size - encoded_size(records[-1])
    group_start = size - sum(encoded_size(record) for record in records[1:])

    for offset in range(last_start, size):
        directory = tmp_path / f"flip-{offset}"
        shutil.copytree(pristine, directory)
        flip_byte(directory / segment.name, offset)
        caplog.clear()

        replayed, report = recover_all(directory)

        assert replayed == list(enumerate(records[:1])), offset
        assert report.truncated_bytes == size - group_start
        assert (directory / segment.name).stat().st_size == group_start
        assert len(journal_errors(caplog)) == 1


@pytest.mark.anyio
async def test_a_torn_header_of_a_new_last_segment_is_removed_and_appends_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    records = decisions(0, 3)
    await write_journal(pristine, [records])
    [segment] = segment_paths(pristine)
    new_name = segment_name(3)

    for length in range(HEADER.size):
        directory = tmp_path / f"header-{length}"
        shutil.copytree(pristine, directory)
        (directory / new_name).write_bytes(segment_header(3)[:length])
        caplog.clear()

        replayed, report = recover_all(directory)

        assert replayed == list(enumerate(records)), length
        assert (report.truncated_bytes, report.truncated_segment) == (length, new_name)
        assert (report.segments, report.last_segment) == (1, directory / segment.name)
        assert not (directory / new_name).exists()
        [message] = journal_errors(caplog)
        assert "torn header" in message

        async with writing(directory, report) as journal:
            journal.append(decisions(3, 1))
        replayed, report = recover_all(directory)
        assert replayed == list(enumerate(decisions(0, 4)))
        assert report.truncated_bytes == 0


@pytest.mark.anyio
async def test_a_torn_header_of_the_first_segment_leaves_an_empty_journal(
    tmp_path: Path,
) -> None:
    (tmp_path / segment_name(0)).write_bytes(segment_header(0)[:5])

    replayed, report = recover_all(tmp_path)

    assert replayed == []
    assert (report.next_index, report.segments, report.last_segment) == (0, 0, None)
    assert report.truncated_bytes == 5
    async with writing(tmp_path, report) as journal:
        journal.append(decisions(0, 2))
    replayed, _report = recover_all(tmp_path)
    assert replayed == list(enumerate(decisions(0, 2)))


# -- recovery: corruption refuses to start -------------------------------------------------


async def write_segments(directory: Path, count: int) -> list[Path]:
    """A journal of `count` segments or more, one small group after another."""
    await write_journal(
        directory, [[record] for record in decisions(0, 12)], segment_bytes_max=SMALL_SEGMENT_BYTES
    )
    paths = segment_paths(directory)
    assert len(paths) >= count
    return paths


@pytest.mark.anyio
async def test_a_flipped_byte_anywhere_in_a_segment_before_the_last_is_corruption(
    tmp_path: Path,
) -> None:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    first, *_rest = await write_segments(pristine, 2)
    data = first.read_bytes()

    for offset in range(len(data)):
        directory = tmp_path / f"flip-{offset}"
        shutil.copytree(pristine, directory)
        flip_byte(directory / first.name, offset)

        with pytest.raises(JournalCorrupt, match=first.name):
            recover(directory, ignore)
        assert (directory / first.name).stat().st_size == len(data)  # nothing truncated


@pytest.mark.anyio
@pytest.mark.parametrize("which", [0, -1], ids=["first", "last"])
@pytest.mark.parametrize(
    ("magic", "version"),
    [(b"OCJ2", 2), (b"\0\0\0\0", 0), (b"OCJ1", 1)],
    ids=["magic", "zeros", "version"],
)
async def test_a_segment_that_is_not_ours_is_corruption(
    tmp_path: Path, which: int, magic: bytes, version: int
) -> None:
    victim = (await write_segments(tmp_path, 2))[which]
    data = victim.read_bytes()
    _, _, first_index, chain = HEADER.unpack_from(data)
    victim.write_bytes(HEADER.pack(magic, version, first_index, chain) + data[HEADER.size :])

    with pytest.raises(JournalCorrupt, match=victim.name):
        recover(tmp_path, ignore)


@pytest.mark.anyio
@pytest.mark.parametrize("missing", [0, 1], ids=["first", "middle"])
async def test_a_missing_segment_is_a_gap_and_corruption(tmp_path: Path, missing: int) -> None:
    paths = await write_segments(tmp_path, 3)
    paths[missing].unlink()

    with pytest.raises(JournalCorrupt, match=rf"{paths[missing + 1].name}: starts at record"):
        recover(tmp_path, ignore)


@pytest.mark.anyio
async def test_a_header_whose_first_index_leaves_a_gap_is_corruption(tmp_path: Path) -> None:
    last = (await write_segments(tmp_path, 2))[-1]
    data = last.read_bytes()
    first_index, chain = HEADER.unpack_from(data)[2:]
    moved = last.with_name(segment_name(first_index + 1))
    moved.write_bytes(segment_header(first_index + 1, chain) + data[HEADER.size :])
    last.unlink()

    with pytest.raises(JournalCorrupt, match=f"expected {first_index}"):
        recover(tmp_path, ignore)


@pytest.mark.anyio
async def test_a_short_segment_before_the_last_is_corruption(tmp_path: Path) -> None:
    paths = await write_segments(tmp_path, 2)
    paths[0].write_bytes(paths[0].read_bytes()[: HEADER.size - 1])

    with pytest.raises(JournalCorrupt, match=f"{paths[0].name}: shorter than its header"):
        recover(tmp_path, ignore)


@pytest.mark.anyio
async def test_a_torn_header_under_the_wrong_name_is_corruption(tmp_path: Path) -> None:
    await write_journal(tmp_path, [decisions(0, 3)])
    stray = tmp_path / segment_name(7)  # the next segment would start at 3
    stray.write_bytes(segment_header(7)[:4])

    with pytest.raises(JournalCorrupt, match=stray.name):
        recover(tmp_path, ignore)
    assert stray.exists()


@pytest.mark.anyio
async def test_a_zero_filled_tail_before_the_last_segment_is_corruption(tmp_path: Path) -> None:
    paths = await write_segments(tmp_path, 2)
    with paths[0].open("ab") as file:
        file.write(bytes(64))

    with pytest.raises(JournalCorrupt, match=paths[0].name):
        recover(tmp_path, ignore)


# -- a failing disk ------------------------------------------------------------------------


class FailingWrite:
    """os.write on a disk that has gone bad."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *_args: object) -> int:
        self.calls += 1
        raise OSError(errno.EIO, "Input/output error")


@pytest.mark.anyio
@pytest.mark.parametrize("failing_call", ["write", "fdatasync"])
async def test_a_failed_write_or_sync_stops_the_writer_and_every_later_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: str
) -> None:
    failing: FailingWrite | FailingFdatasync
    journal = Journal(tmp_path, recover(tmp_path, ignore))
    failing = FailingWrite() if failing_call == "write" else FailingFdatasync()
    monkeypatch.setattr(os, failing_call, failing)
    released: list[int] = []
    try:
        position = journal.append(decisions(0, 2))
        journal.call_when_durable(position, lambda: released.append(position))

        with pytest.raises(JournalFailed) as failed:
            await journal.run()

        assert isinstance(failed.value.__cause__, OSError)
        assert failed.value.__cause__.errno == errno.EIO
        assert failing.calls == 1
        assert released == []  # nothing that waited on the failed group is told it is durable
        assert journal.durable_position == 0
        assert journal.statistics().groups_total == 0
        with pytest.raises(JournalFailed):
            journal.append(decisions(2, 1))
        assert journal.appended_position == position
    finally:
        journal.close()


# -- preallocated segments -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_segment_is_preallocated_while_written_and_cut_to_its_records_at_close(
    tmp_path: Path,
) -> None:
    records = decisions(0, 3)
    async with writing(tmp_path, segment_bytes_max=1 << 16) as journal:
        [segment] = segment_paths(tmp_path)
        assert segment.stat().st_size == 1 << 16
        await journal.wait_durable(journal.append(records))
        data = segment.read_bytes()
        written = HEADER.size + sum(encoded_size(record) for record in records)
        assert never_written(data, written)
        assert not never_written(data, HEADER.size)

    assert segment.stat().st_size == written
    replayed, report = recover_all(tmp_path)
    assert replayed == list(enumerate(records))
    assert report.last_segment_bytes == written


@pytest.mark.anyio
async def test_a_crash_leaves_preallocated_zeros_that_recovery_reads_as_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = decisions(0, 5)
    async with writing(tmp_path) as journal:
        await journal.wait_durable(journal.append(records[:3]))
        [segment] = segment_paths(tmp_path)
        crashed = segment.read_bytes()  # what the disk holds if the process dies now
    segment.write_bytes(crashed)
    written = HEADER.size + sum(encoded_size(record) for record in records[:3])

    replayed, report = recover_all(tmp_path)

    assert replayed == list(enumerate(records[:3]))
    assert (report.truncated_bytes, report.last_segment_bytes) == (0, written)
    assert journal_errors(caplog) == []  # not a torn tail: space never written
    async with writing(tmp_path, report) as journal:
        assert journal.append(records[3:]) == 5  # written where the records end, not after
    replayed, report = recover_all(tmp_path)
    assert replayed == list(enumerate(records))
    assert report.truncated_bytes == 0


@pytest.mark.anyio
async def test_a_torn_group_in_preallocated_space_is_cut_with_the_space_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = decisions(0, 4)
    await write_journal(tmp_path, [records[:2], records[2:]])
    [segment] = segment_paths(tmp_path)
    data = bytearray(segment.read_bytes())
    group_start = len(data) - encoded_size(records[2]) - encoded_size(records[3])
    torn = group_start + RECORD_HEADER.size + 3  # the group's first record header and a bit
    data[torn:] = bytes(len(data) - torn)
    segment.write_bytes(bytes(data) + bytes(4096))  # and the preallocated rest

    replayed, report = recover_all(tmp_path)

    assert replayed == list(enumerate(records[:2]))
    assert report.truncated_bytes == len(data) + 4096 - group_start
    assert segment.stat().st_size == group_start
    [message] = journal_errors(caplog)
    assert "TORN TAIL" in message


def test_a_snapshot_inside_a_torn_group_is_not_resumed_from(tmp_path: Path) -> None:
    # The running switch snapshots at the appended position, which may lie inside a group
    # that a crash then tears: resuming there would keep half of that group.
    records = decisions(0, 8)
    journal = Journal(tmp_path, recover(tmp_path, ignore))
    journal.append(records[:4])
    journal.write_now()
    journal.append(records[4:6])
    inside = (journal.appended_position, journal.last_chain)  # a snapshot here: record 6
    journal.append(records[6:])
    journal.write_now()
    journal.close()
    [segment] = segment_paths(tmp_path)
    intact = segment.read_bytes()

    resumed: list[int] = []
    recover(tmp_path, lambda index, _record: resumed.append(index), resume=inside)
    assert resumed == [6, 7]  # whole, the group resumes fine

    segment.write_bytes(intact[:-3])  # torn inside record 7
    with pytest.raises(SnapshotMismatch, match="torn group"):
        recover(tmp_path, ignore, resume=inside)
    assert segment.read_bytes() == intact[:-3]  # left for the fallback to truncate
    replayed, report = recover_all(tmp_path)
    assert replayed == list(enumerate(records[:4]))  # the torn group goes whole
    group_start = len(intact) - sum(encoded_size(record) for record in records[4:])
    assert (report.next_index, segment.stat().st_size) == (4, group_start)


@pytest.mark.anyio
async def test_verify_accepts_preallocated_zeros_only_in_the_last_segment(tmp_path: Path) -> None:
    paths = await write_segments(tmp_path, 2)
    with paths[-1].open("ab") as file:  # what a crash leaves of the segment being written
        file.write(bytes(4096))
    assert verify(tmp_path, b"").ok

    size = paths[0].stat().st_size
    with paths[0].open("ab") as file:
        file.write(bytes(64))
    report = verify(tmp_path, b"")

    [finding] = report.findings
    assert (finding.segment, finding.offset) == (paths[0].name, size)
    assert "64 zero bytes after its last record" in finding.problem


@pytest.mark.anyio
async def test_a_reopened_segment_that_cannot_be_preallocated_still_takes_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await write_journal(tmp_path, [decisions(0, 2)])

    def disk_full(_fd: int, _size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "preallocate", disk_full)
    async with writing(tmp_path) as journal:
        assert journal.append(decisions(2, 1)) == 3

    assert "not preallocated" in caplog.text
    replayed, _report = recover_all(tmp_path)
    assert replayed == list(enumerate(decisions(0, 3)))
