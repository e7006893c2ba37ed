"""Reading the journal back: in order, in bounded batches, across segment files."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from switch.journal import Journal, recover
from switch.journal.records import CardStatusChanged, Record
from switch.journal.segment import segment_paths
from switch.keystore import KeyStore
from switch.store import tail as tail_module
from switch.store.tail import JournalTail, read_records

# Small segments, so a few hundred records span several files.
SEGMENT_BYTES = 4096


def write(directory: Path, records: list[Record], key: bytes) -> None:
    journal = Journal(
        directory, recover(directory, lambda _i, _r: None, key), segment_bytes_max=SEGMENT_BYTES
    )

    async def run() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            for start in range(0, len(records), 50):  # one group each: segments roll between
                await journal.wait_durable(journal.append(records[start : start + 50]))
            group.cancel_scope.cancel()

    try:
        anyio.run(run)
    finally:
        journal.close()


def test_tail_reads_in_batches_across_segments(tmp_path: Path) -> None:
    key = KeyStore().journal
    records: list[Record] = [CardStatusChanged(n, f"X{n:08d}", "lost", "test") for n in range(300)]
    write(tmp_path, records, key)
    assert len(segment_paths(tmp_path)) > 2
    tail = JournalTail(tmp_path)
    got: list[Record] = []
    while len(got) < len(records):
        batch = tail.read(len(got), len(records), 64)
        assert 0 < len(batch) <= 64
        got += batch
    assert got == records
    assert tail.read(300, 300, 64) == []
    assert tail.read(7, 9, 64) == records[7:9]  # another index: found again from its segment
    assert read_records(tmp_path, [299, 5, 5], 300) == {5: records[5], 299: records[299]}


@pytest.mark.parametrize(
    "read_bytes",
    [
        100,  # at most two whole records a read, often ending inside one: more reads follow
        16,  # less than one record: each is read again whole, as a large record would be
    ],
)
def test_reads_too_short_for_a_batch_are_followed_by_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int
) -> None:
    monkeypatch.setattr(tail_module, "READ_BYTES_MIN", read_bytes)
    monkeypatch.setattr(tail_module, "RECORD_BYTES_ESTIMATE", 1)
    key = KeyStore().journal
    records: list[Record] = [CardStatusChanged(n, f"X{n:08d}", "lost", "test") for n in range(120)]
    write(tmp_path, records, key)
    tail = JournalTail(tmp_path)
    assert tail.read(0, 120, 100) == records[:100]
    assert tail.read(100, 120, 100) == records[100:]
