"""Reconciliation: a bank's return file matched line by line against our settlement file;
each exception class; resolutions journalled, and an adjustment settled in the next cycle."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from settlement.cycle import SettledCycle, settle_cycle
from settlement.errors import FileFormatError, ResolutionRefused
from settlement.files import lines_of, render_bank_file, settlement_file_name
from settlement.layout import RETURN_KIND
from settlement.ledger import Account
from settlement.reconcile import (
    Action,
    Discrepancy,
    reconcile,
    render_report,
    resolution_record,
)
from settlement.records import ReconciliationResolved
from settlement.tally import BankLine
from tests.settlement.harness import Day, iso_payment, settlement_config

CONFIG = settlement_config()


def four_payments(day: Day, tmp_path: Path) -> SettledCycle:
    for serial, amount in zip(range(40, 44), (1_000, 2_000, 3_000, 4_000), strict=True):
        day.submit(iso_payment(day, f"X{serial:08d}", bank_fen=-amount))
    close = day.close()
    return settle_cycle(day.write(tmp_path), CONFIG, day.keys.journal, close, None)


def return_file(settled: SettledCycle, lines: list[BankLine]) -> bytes:
    return render_bank_file(settled.info, "ABC", lines, [], 0, kind=RETURN_KIND)


def ours(settled: SettledCycle) -> bytes:
    return settled.files.files[settlement_file_name("ABC", settled.info.cycle)]


def abc_lines(settled: SettledCycle) -> list[BankLine]:
    """Our file's entries, read back from it: what an honest bank books."""
    lines = lines_of(ours(settled), "STLM-ABC")
    assert [line.amount_fen for line in lines] == [
        line.amount_fen for line in settled.positions.bank_lines if line.bank == "ABC"
    ]
    return lines


def test_a_return_file_that_agrees_matches_every_line(tmp_path: Path) -> None:
    settled = four_payments(Day(cards=48), tmp_path)
    result = reconcile(ours(settled), return_file(settled, abc_lines(settled)), "RETN-ABC")
    assert (result.matched, result.matched_fen, result.exceptions) == (4, 10_000, [])


def test_every_exception_class(tmp_path: Path) -> None:
    settled = four_payments(Day(cards=48), tmp_path)
    one, two, three, four = abc_lines(settled)
    stranger = BankLine(0, "ABC", "PAYM", "000099999999", "X00000099", "", -700, 1, "")
    theirs = [
        one,  # agrees
        three._replace(amount_fen=-2_999),  # booked one fen less
        four,
        four,  # booked twice
        stranger,  # never ours
    ]  # and `two` was not booked at all
    result = reconcile(ours(settled), return_file(settled, theirs), "RETN-ABC")
    assert result.matched == 1
    found = {e.discrepancy: e for e in result.exceptions}
    assert set(found) == set(Discrepancy)
    assert found[Discrepancy.MISSING_THEIRS].entry == f"PAYM {two.reference}"
    assert found[Discrepancy.MISSING_THEIRS].difference_fen == 2_000  # we owe it back
    assert found[Discrepancy.AMOUNT_MISMATCH].difference_fen == 1
    assert found[Discrepancy.DUPLICATE].theirs_lines == [4, 5]
    assert found[Discrepancy.DUPLICATE].difference_fen == -4_000
    assert found[Discrepancy.MISSING_OURS].ours_lines == []
    assert found[Discrepancy.MISSING_OURS].card == "X00000099"
    report = render_report(result).decode()
    assert report.count("\nE,") == 4
    assert "missing_ours=1" in report and ",open" in report


def test_a_return_file_for_another_cycle_is_refused(tmp_path: Path) -> None:
    settled = four_payments(Day(cards=48), tmp_path)
    other = msgspec.structs.replace(settled.info, cycle=2)
    theirs = render_bank_file(other, "ABC", abc_lines(settled), [], 0, kind=RETURN_KIND)
    with pytest.raises(FileFormatError, match="another cycle"):
        reconcile(ours(settled), theirs, "RETN-ABC")
    with pytest.raises(FileFormatError, match="not a settlement"):
        reconcile(theirs, theirs, "RETN-ABC")


def test_resolutions_are_journalled_once_and_an_adjustment_settles_next_cycle(
    tmp_path: Path,
) -> None:
    day = Day(cards=48)
    settled = four_payments(day, tmp_path / "one")
    one, two, three, _four = abc_lines(settled)
    result = reconcile(ours(settled), return_file(settled, [one, two, three]), "RETN-ABC")
    (missing,) = result.exceptions
    state = day.engine.settlement

    def decide(action: Action, amount: int) -> ReconciliationResolved:
        return resolution_record(
            result, state, missing.entry, action, amount, "recon-clerk", "lost", day.now_ms
        )

    with pytest.raises(ResolutionRefused, match=r"1\.\.4000"):
        decide(Action.ADJUST, 4_001)
    with pytest.raises(ResolutionRefused, match="direction"):
        decide(Action.ADJUST, -10)
    with pytest.raises(ResolutionRefused, match="moves no money"):
        decide(Action.BANK_TO_CORRECT, 5)
    with pytest.raises(ResolutionRefused, match="no exception"):
        resolution_record(
            result, state, "PAYM 1", Action.ACCEPTED, 0, "recon-clerk", "", day.now_ms
        )
    resolved = decide(Action.ADJUST, 4_000)
    day.submit(resolved)
    with pytest.raises(ResolutionRefused, match="resolved already"):
        decide(Action.ACCEPTED, 0)
    assert "resolved" in render_report(result, state.resolved).decode()
    # The adjustment moves money in the cycle that journalled it: the bank gets the 4,000
    # back from the card service's suspense account.
    close = day.close()
    first_close = day.engine.settlement.closes[1]
    two_settled = settle_cycle(
        day.write(tmp_path / "two"), CONFIG, day.keys.journal, close, first_close
    )
    (line,) = two_settled.positions.bank_lines
    assert (line.entry, line.reference, line.amount_fen) == (
        "ADJS",
        f"000001-PAYM-{missing.entry.split()[1]}",
        4_000,
    )
    suspense = [p for p in two_settled.positions.positions if p.account == Account.SUSPENSE]
    assert [p.net_fen for p in suspense] == [-4_000]
    assert two_settled.positions.movement_fen == 4_000
    abc = two_settled.files.files[settlement_file_name("ABC", 2)].decode().splitlines()
    assert any(row.startswith("D000000001ADJS000001-PAYM-") for row in abc)
