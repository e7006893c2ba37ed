"""The fixed-width file layout: what we write parses back; what breaks the format is
refused with the line at fault; docs/settlement.md shows the layout the code uses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from settlement.cycle import settle_cycle
from settlement.errors import FileFormatError
from settlement.files import CycleInfo, parse_bank_file, render_bank_file, settlement_file_name
from settlement.layout import DETAIL, LAYOUTS, LINE_WIDTH, RETURN_KIND, describe
from settlement.tally import BankLine
from tests.settlement.harness import Day, busy_day, settlement_config

INFO = CycleInfo(7, 100, 199, 1_796_000_000_000, 1_796_086_400_000, 1_796_086_400_123, "20261130")
LINES = [
    BankLine(120, "ABC", "PAYM", "000000123456", "X00000014", "", -5_000, 1_796_050_000_000, "m-1"),
    BankLine(150, "ABC", "SUBS", "B-1/000003", "X00000016", "622848*****0018", 50_000, 1, "fb"),
]


def settled_file(tmp_path: Path) -> bytes:
    day = Day()
    busy_day(day)
    close = day.close()
    settled = settle_cycle(day.write(tmp_path), settlement_config(), day.keys.journal, close, None)
    return settled.files.files[settlement_file_name("ABC", 1)]


def test_a_settlement_file_parses_back_with_its_control_totals(tmp_path: Path) -> None:
    data = settled_file(tmp_path)
    parsed = parse_bank_file(data, "STLM-ABC")
    assert parsed.header["kind"] == "STLM"
    assert parsed.header["bank"] == "ABC"
    # Two ISO 8583 payments took money from ABC accounts: a purchase and a medical remainder.
    assert [fields["entry"] for _n, fields in parsed.details] == ["PAYM", "PAYM"]
    assert [fields["amount_fen"] for _n, fields in parsed.details] == [5_000, 200]
    assert parsed.trailer["detail_count"] == 2
    assert parsed.trailer["sha256"] == hashlib.sha256(data[: -(LINE_WIDTH + 1)]).hexdigest()
    assert parsed.net_fen is not None
    assert all(len(line) == LINE_WIDTH for line in data.decode().splitlines())


def test_a_return_file_renders_and_parses() -> None:
    data = render_bank_file(INFO, "ABC", LINES, [], 0, kind=RETURN_KIND)
    parsed = parse_bank_file(data, "RETN")
    assert parsed.header["kind"] == RETURN_KIND
    assert parsed.net_fen is None and parsed.summaries == []
    assert [(n, f["direction"], f["amount_fen"]) for n, f in parsed.details] == [
        (2, "D", 5_000),
        (3, "C", 50_000),
    ]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize(
    ("damage", "line", "problem"),
    [
        (lambda ls: ls[:-1], 3, "no trailer"),
        (lambda ls: [ls[1], ls[0], *ls[2:]], 1, "out of place"),
        (lambda ls: [ls[0], ls[1][:-1], *ls[2:]], 2, "131 characters"),
        (lambda ls: [ls[0], ls[1].replace(b"05000", b"05001"), *ls[2:]], 4, "checksum"),
        (lambda ls: [ls[0], ls[1][:85] + b"x" + ls[1][86:], *ls[2:]], 2, "digits"),
        (lambda ls: [*ls, ls[-1]], 5, "after the trailer"),
    ],
)
def test_a_damaged_file_is_refused_at_its_line(damage: object, line: int, problem: str) -> None:
    data = render_bank_file(INFO, "ABC", LINES, [], 0, kind=RETURN_KIND)
    assert callable(damage)
    with pytest.raises(FileFormatError, match=problem) as caught:
        parse_bank_file(_join(damage(_lines(data))), "RETN-ABC")
    assert caught.value.line == line


def test_control_totals_that_disagree_with_the_lines_are_refused() -> None:
    data = render_bank_file(INFO, "ABC", LINES, [], 0, kind=RETURN_KIND)
    lines = _lines(data)
    body = _join(lines[:-1])
    # A trailer with a good checksum but a wrong total: someone re-signed a bad file.
    trailer = lines[-1].decode()
    tampered_total = trailer[:10] + "000000000004999" + trailer[25:65]
    fixed = tampered_total + hashlib.sha256(body).hexdigest() + trailer[129:]
    with pytest.raises(FileFormatError, match="control totals"):
        parse_bank_file(body + fixed.encode() + b"\n", "RETN-ABC")


def test_values_that_do_not_fit_are_refused_when_writing() -> None:
    long_reference = BankLine(1, "ABC", "PAYM", "R" * 41, "X00000001", "", -1, 1, "m")
    with pytest.raises(FileFormatError, match="wider"):
        render_bank_file(INFO, "ABC", [long_reference], [], 0)
    not_ascii = BankLine(1, "ABC", "PAYM", "1", "X00000001", "", -1, 1, "商户")
    with pytest.raises(FileFormatError, match="ASCII"):
        render_bank_file(INFO, "ABC", [not_ascii], [], 0)


def test_every_layout_fits_the_line() -> None:
    for layout in LAYOUTS.values():
        assert sum(field.width for field in layout.fields) <= LINE_WIDTH
    assert DETAIL.render({f.name: 0 if f.kind == "N" else "" for f in DETAIL.fields})


def test_the_documented_layout_is_the_code_s() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "settlement.md").read_text()
    assert describe() in doc
