"""Cycles: every record in exactly one, closes journalled, a zero cycle settled, closing and
settling without a race, and re-runs that reproduce the first run byte for byte."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from protocols.terminal import OfflineTap
from settlement.cycle import Catalog, SettledCycle, local_catalog, scan_catalog, settle_cycle
from settlement.errors import CycleNotClosed, JournalUnreadable, NotDeterministic
from settlement.files import MANIFEST, REFERENCE_FILE, settlement_file_name
from settlement.layout import LINE_WIDTH
from settlement.records import CycleClosed
from switch.journal.records import OfflineTapApplied
from switch.journal.segment import segment_paths
from tests.settlement.harness import Day, busy_day, settlement_config

CONFIG = settlement_config()


def three_cycles(day: Day) -> list[CycleClosed]:
    busy_day(day)
    closes = [day.close()]
    for serial in range(20, 24):
        day.tap(f"X{serial:08d}")
    closes.append(day.close())
    day.purchase("X00000024", 450)
    closes.append(day.close())
    return closes


def test_cycles_partition_the_journal(tmp_path: Path) -> None:
    day = Day()
    closes = three_cycles(day)
    day.tap("X00000030")  # the open cycle's
    data = day.write(tmp_path)
    catalog = scan_catalog(data / "journal", day.keys.journal)
    assert catalog.closes == {close.cycle: close for close in closes}
    settled = [
        settle_cycle(data, CONFIG, day.keys.journal, close, catalog.closes.get(close.cycle - 1))
        for close in closes
    ]
    spans = [(s.info.first_index, s.info.last_index) for s in settled]
    # Each cycle starts right after the previous one ends: no gap, no overlap.
    assert spans[0][0] == 0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start == end + 1
    assert sum(s.info.records for s in settled) == closes[-1].last_index + 1
    assert [s.positions.movement_fen for s in settled][1:] == [4 * 200, 450]


def test_a_zero_amount_cycle_settles_with_a_file_for_every_bank(tmp_path: Path) -> None:
    day = Day()
    first = day.close()
    empty = day.close()  # nothing happened in between
    data = day.write(tmp_path)
    settle_cycle(data, CONFIG, day.keys.journal, first, None)
    settled = settle_cycle(data, CONFIG, day.keys.journal, empty, first)
    assert settled.info.records == 1  # the previous cycle's close, which moves nothing
    assert settled.positions.movement_fen == 0
    assert settled.positions.positions == []
    for bank in CONFIG.partner_banks:
        text = settled.files.files[settlement_file_name(bank, 2)].decode()
        lines = text.splitlines()
        assert [line[0] for line in lines] == ["H", "N", "T"]
        assert all(len(line) == LINE_WIDTH for line in lines)
        assert lines[1][1:].split()[1].startswith("000000000000000000000000000000+")
    assert (settled.directory / MANIFEST).exists()


def test_a_late_offline_upload_settles_in_the_open_cycle_with_its_tap_time(
    tmp_path: Path,
) -> None:
    day = Day()
    day.tap("X00000011")
    tapped_at = day.now_ms - 5 * 60_000  # the gate was offline before the close
    first = day.close()
    day.advance(30)
    assert day.offline("G0003", [OfflineTap(77, tapped_at, "X00000012")]).code == "00"
    second = day.close()
    data = day.write(tmp_path)
    one = settle_cycle(data, CONFIG, day.keys.journal, first, None)
    two = settle_cycle(data, CONFIG, day.keys.journal, second, first)
    (late,) = [r for r in day.journal if isinstance(r, OfflineTapApplied)]
    assert late.tap_time_ms == tapped_at < first.cutover_ms < late.time_ms

    def sources(settled: SettledCycle) -> list[str]:
        return [line.source for payout in settled.positions.payouts for line in payout.lines]

    assert "G0003/offline" not in sources(one)
    assert "G0003/offline" in sources(two)
    assert two.positions.movement_fen == late.charge_fen > 0


def test_settling_reads_nothing_after_the_close(tmp_path: Path) -> None:
    """Close, then the switch goes on journalling (taps, a late upload, a record still
    being written): the closed cycle's files are what they would be without any of it."""
    quiet_day = Day()
    busy_day(quiet_day)
    close = quiet_day.close()
    alone = settle_cycle(
        quiet_day.write(tmp_path / "alone"), CONFIG, quiet_day.keys.journal, close, None
    )
    day = quiet_day  # the same day goes on after its close
    for serial in range(20, 30):
        day.tap(f"X{serial:08d}")
    day.offline("G0004", [OfflineTap(5, close.time_ms - 1_000, "X00000031")])
    data = day.write(tmp_path / "busy")
    last = segment_paths(data / "journal")[-1]
    with last.open("ab") as file:
        file.write(b"\x00\x00\x01\x00torn")  # a group the writer has not finished
    raced = settle_cycle(data, CONFIG, day.keys.journal, close, None)
    assert raced.files.files == alone.files.files
    assert raced.digest == alone.digest


def test_a_close_not_yet_on_disk_is_not_settled(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    close = day.close()
    written = day.journal[:-1]  # the close is appended, not yet written
    day.harness.journal = written
    data = day.write(tmp_path)
    with pytest.raises(JournalUnreadable, match="not whole on disk"):
        settle_cycle(data, CONFIG, day.keys.journal, close, None)
    catalog = scan_catalog(data / "journal", day.keys.journal)
    with pytest.raises(CycleNotClosed):
        catalog.bounds(1)


def test_a_rerun_is_byte_identical_however_it_reads(tmp_path: Path) -> None:
    day = Day()
    closes = three_cycles(day)
    data = day.write(tmp_path / "a")
    first = [
        settle_cycle(data, CONFIG, day.keys.journal, c, p)
        for c, p in zip(closes, [None, *closes[:-1]], strict=True)
    ]
    again = settle_cycle(data, CONFIG, day.keys.journal, closes[1], closes[0])
    assert again.files == first[1].files
    # Another copy of the journal, read by two worker processes, without the previous
    # cycle's reference file (the registry is read from the journal instead).
    copy = tmp_path / "b"
    shutil.copytree(data / "journal", copy / "journal")
    parallel = settlement_config(parallel_records_min=1, workers=2)
    from_scratch = settle_cycle(copy, parallel, day.keys.journal, closes[1], closes[0])
    assert len(segment_paths(copy / "journal")) > 2
    assert not (copy / "settlement" / "cycles" / "000001" / REFERENCE_FILE).exists()
    assert from_scratch.files == first[1].files
    for name, data_bytes in first[1].files.files.items():
        assert (first[1].directory / name).read_bytes() == data_bytes


def test_a_rerun_that_differs_is_refused_and_keeps_the_first_files(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    close = day.close()
    data = day.write(tmp_path)
    settled = settle_cycle(data, CONFIG, day.keys.journal, close, None)
    with pytest.raises(NotDeterministic, match="journalled"):
        settle_cycle(data, CONFIG, day.keys.journal, close, None, journalled_digest="0" * 64)
    # Other fee rates are other files: the first run's stay.
    other = settlement_config(fee_rates_bp={"merchant": 30})
    with pytest.raises(NotDeterministic, match="kept the first run's"):
        settle_cycle(data, other, day.keys.journal, close, None)
    for name, content in settled.files.files.items():
        assert (settled.directory / name).read_bytes() == content
    # A file deleted or edited since is restored by a re-run.
    (settled.directory / settlement_file_name("ABC", 1)).write_bytes(b"edited")
    settle_cycle(data, CONFIG, day.keys.journal, close, None, journalled_digest=settled.digest)
    abc = settled.directory / settlement_file_name("ABC", 1)
    assert abc.read_bytes() == settled.files.files[abc.name]


def test_a_tampered_record_stops_settlement(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    close = day.close()
    data = day.write(tmp_path)
    segment = segment_paths(data / "journal")[0]
    content = bytearray(segment.read_bytes())
    content[200] ^= 0x01  # inside the first record's payload
    segment.write_bytes(bytes(content))
    with pytest.raises(JournalUnreadable, match="chain value"):
        settle_cycle(data, CONFIG, day.keys.journal, close, None)


def test_the_catalog_continues_from_what_it_knows(tmp_path: Path) -> None:
    day = Day()
    closes = three_cycles(day)
    data = day.write(tmp_path)
    whole = scan_catalog(data / "journal", day.keys.journal)
    known = Catalog({1: closes[0]}, {}, closes[0].last_index + 2)
    rest = scan_catalog(data / "journal", day.keys.journal, known.end_index, known)
    assert rest.closes == whole.closes
    assert rest.end_index == whole.end_index == len(day.journal)


def test_the_local_record_tells_where_the_journal_after_it_starts(tmp_path: Path) -> None:
    day = Day()
    closes = three_cycles(day)
    data = day.write(tmp_path)
    for close, previous in zip(closes[:2], [None, closes[0]], strict=True):
        settle_cycle(data, CONFIG, day.keys.journal, close, previous)
    known = local_catalog(data, CONFIG)
    assert known.closes == {1: closes[0], 2: closes[1]}
    assert known.end_index == closes[1].last_index + 1
    resumed = scan_catalog(data / "journal", day.keys.journal, known.end_index, known)
    assert resumed.closes == scan_catalog(data / "journal", day.keys.journal).closes
