"""`journal verify` catches every kind of tampering and says where; `inspect` masks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from switch.cli import main
from switch.config import EngineConfig
from switch.demo import DemoSpec, card_number, create_demo
from switch.errors import JournalCorrupt
from switch.journal import Journal, recover
from switch.journal.records import CardStatusChanged
from switch.journal.segment import (
    HEADER,
    LINK_RECORDS_MAX,
    RECORD_HEADER,
    RawRecord,
    scan_records,
    segment_paths,
)
from switch.journal.verify import verify
from switch.keystore import KeyStore

CARDS = 8


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("pristine")
    create_demo(data_dir, DemoSpec(cards=CARDS), EngineConfig())
    # Two more write groups after the demo's: damage in an acknowledged group is then
    # followed by a complete later one, which is what tells it from a torn write.
    key = KeyStore.load(data_dir).journal
    for group in range(2):
        report = recover(data_dir / "journal", lambda _i, _r: None, key)
        change = CardStatusChanged(group, card_number(1), "active", "test")
        Journal.append_while_stopped(data_dir / "journal", report, [change])
    return data_dir


def spans(segment: Path) -> list[tuple[int, int]]:
    """(start, end) of every record's bytes in the segment."""
    data = segment.read_bytes()
    out = []
    for item in scan_records(data, HEADER.size):
        assert isinstance(item, RawRecord)
        out.append((item.offset, item.payload_start + item.length))
    return out


def tamper(data: bytes, parts: list[tuple[int, int]]) -> dict[str, tuple[bytes, int]]:
    """Tampered copies of a segment, each with the index of the first record it breaks."""
    r = [data[a:b] for a, b in parts]
    head = data[: parts[0][0]]
    flipped = bytearray(data)
    flipped[parts[10][0] + RECORD_HEADER.size + 3] ^= 0x01  # inside record 10's payload
    return {
        "flipped byte": (bytes(flipped), 10),
        "deleted": (head + b"".join(r[:10] + r[11:]), 10),
        "inserted": (head + b"".join([*r[:10], r[3], *r[10:]]), 10),
        "reordered": (head + b"".join([*r[:10], r[11], r[10], *r[12:]]), 10),
    }


@pytest.mark.parametrize("kind", ["flipped byte", "deleted", "inserted", "reordered"])
def test_verify_catches_tampering_and_says_where(
    pristine: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    [segment] = segment_paths(data_dir / "journal")
    data = segment.read_bytes()
    tampered, broken_at = tamper(data, spans(segment))[kind]
    segment.write_bytes(tampered)
    keys = KeyStore.load(data_dir)

    report = verify(data_dir / "journal", keys.journal)
    assert not report.ok
    finding = report.findings[0]
    assert finding.segment == segment.name
    if kind == "flipped byte":  # the CRC names the record itself
        assert finding.record == broken_at
    else:  # the chain names the link that holds it, a few records
        link = re.search(r"one of records (\d+)-(\d+)", finding.problem)
        assert link is not None, finding.problem
        first, last = int(link[1]), int(link[2])
        assert finding.record == first <= broken_at <= last < first + LINK_RECORDS_MAX
    assert main(["--data-dir", str(data_dir), "journal", "verify"]) == 1
    assert f"(record {finding.record})" in capsys.readouterr().out
    # The switch refuses to start from it, rather than truncating acknowledged history.
    with pytest.raises(JournalCorrupt):
        recover(data_dir / "journal", lambda _i, _r: None, keys.journal)


def test_an_intact_journal_verifies(pristine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(pristine), "journal", "verify"]) == 0
    assert "intact" in capsys.readouterr().out


def test_a_rewritten_chain_without_the_key_is_caught(pristine: Path) -> None:
    # Someone who can write the files but not read keys.json cannot forge the chain: the
    # journal checked with another key fails at its first record.
    report = verify(pristine / "journal", bytes(32))
    assert report.findings[0].record == 0


def test_inspect_masks_identifiers(pristine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(pristine), "journal", "inspect"]) == 0
    out = capsys.readouterr().out
    assert '"type": "card"' in out
    assert "X00000001" not in out  # card numbers masked
    keys = KeyStore.load(pristine)
    del keys
    for line in out.splitlines():
        assert '"holder_masked": "4203' in line or "holder_masked" not in line
