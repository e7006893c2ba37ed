"""Money conservation: every fen a cycle's records moved is in exactly one position, and
the positions agree with what the engine itself holds (an independent replay of the same
records), cycle after cycle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from settlement.cycle import cycle_info, read_cycle, settle_cycle
from settlement.errors import ConservationError
from settlement.ledger import Account
from settlement.positions import CyclePositions, build_positions
from switch.banks.records import IsoPayment
from switch.journal.records import CardIssued, OfflineTapApplied
from tests.settlement.harness import Day, busy_day, settlement_config


def net(positions: CyclePositions, account: Account, party: str | None = None) -> int:
    return sum(
        p.net_fen
        for p in positions.positions
        if p.account == account and (party is None or p.party == party)
    )


def purses(day: Day) -> tuple[int, int, int]:
    cards = day.engine.cards.values()
    return (
        sum(c.purse_fen for c in cards),
        sum(c.debt_fen for c in cards),
        sum(c.medical_fen for c in cards),
    )


def test_a_busy_cycle_conserves_money(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    close = day.close()
    settled = settle_cycle(day.write(tmp_path), settlement_config(), day.keys.journal, close, None)
    result = settled.positions
    debit = sum(p.debit_fen for p in result.positions if p.account != Account.FEE)
    credit = sum(p.credit_fen for p in result.positions if p.account != Account.FEE)
    assert debit == credit == result.movement_fen > 0
    assert sum(p.net_fen for p in result.positions) == 0
    assert sum(n.net_fen for n in result.bank_nets) == 0
    # The float, the debt and the medical accounts are what the engine holds: the first
    # cycle starts from nothing but the cards' opening medical balances.
    purse, debt, medical = purses(day)
    opening_medical = sum(r.medical_fen for r in day.journal if isinstance(r, CardIssued))
    assert net(result, Account.PURSE) == purse
    assert net(result, Account.PURSE_DEBT) == -debt < 0
    assert net(result, Account.MEDICAL) == medical - opening_medical < 0
    # Holders' bank accounts: every ISO 8583 bank leg and the subsidy credit.
    bank_legs = sum(r.bank_fen for r in day.journal if isinstance(r, IsoPayment))
    assert net(result, Account.CARD_BANK) == bank_legs + 50_000
    assert net(result, Account.FUNDER, "finance-bureau") == -50_000


def test_payouts_fees_and_withheld_payees(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    close = day.close()
    result = settle_cycle(
        day.write(tmp_path), settlement_config(), day.keys.journal, close, None
    ).positions
    payouts = {p.payee: p for p in result.payouts}
    bus = payouts["shiyan-bus"]
    # Ten online taps at ¥2; two offline ones priced by the engine (one a transfer).
    offline = [r for r in day.journal if isinstance(r, OfflineTapApplied)]
    assert len(offline) == 2
    assert bus.gross_fen == 10 * 200 + sum(tap.charge_fen for tap in offline)
    assert bus.fee_fen == 0  # transit pays no fee by default
    merchant = payouts["merchant-0001"]
    # 350 and 800 paid at P0001, 800 reversed; 5,000 by ISO 8583 from a bank account.
    assert (merchant.gross_fen, merchant.reversed_fen) == (350 + 800 + 5_000, 800)
    assert merchant.fee_fen == (350 + 5_000) * 60 // 10_000
    assert merchant.payout_fen == 350 + 5_000 - merchant.fee_fen
    assert payouts["merchant-0002"].withheld  # no payout account configured
    assert payouts["hospital-0001"].gross_fen > 0
    assert result.fee_fen == sum(p.fee_fen for p in result.payouts)


def test_each_cycle_conserves_against_the_engine(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    first = day.close()
    before = purses(day)
    for serial in range(20, 26):
        day.tap(f"X{serial:08d}")
    day.purchase("X00000021", 999)
    second = day.close()
    data = day.write(tmp_path)
    config = settlement_config()
    settle_cycle(data, config, day.keys.journal, first, None)
    result = settle_cycle(data, config, day.keys.journal, second, first).positions
    after = purses(day)
    assert net(result, Account.PURSE) == after[0] - before[0] == -(6 * 200 + 999)
    assert result.movement_fen == 6 * 200 + 999


def test_positions_that_do_not_add_up_are_refused(tmp_path: Path) -> None:
    day = Day()
    busy_day(day)
    close = day.close()
    data = day.write(tmp_path)
    config = settlement_config()
    info = cycle_info(close, None, config)
    tallies = read_cycle(data / "journal", day.keys.journal, info, config)
    build_positions(tallies, {}, config)  # whole: fine
    # A tally that lost a fen on the way (a bug, a bit flip in memory): refused.
    short = dataclasses.replace(tallies[-1], movement_fen=tallies[-1].movement_fen + 1)
    with pytest.raises(ConservationError, match="moved"):
        build_positions([*tallies[:-1], short], {}, config)
    skewed = dataclasses.replace(tallies[-1], purse_net_fen=tallies[-1].purse_net_fen - 1)
    with pytest.raises(ConservationError, match="purse"):
        build_positions([*tallies[:-1], skewed], {}, config)
