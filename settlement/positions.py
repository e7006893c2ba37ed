"""From a cycle's tallies to positions, payouts, fees and each bank's multilateral net;
and the checks that every fen is accounted for. Pure: tallies and configuration in,
CyclePositions out.

Money conservation is checked here, not assumed, and a mismatch raises ConservationError
(settling stops; nothing is written):

    1. the positions built from the journal's legs debit and credit exactly the money the
       records moved, counted record by record while reading (Tally.movement_fen);
    2. the purse float's position is the purse movement counted record by record;
    3. fee positions balance (what payees pay is what the card service earns);
    4. the banks' multilateral nets add up to zero, and each is the sum of the positions
       of the parties whose accounts it holds;
    5. the payouts are the payees' positions less their fees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from settlement.config import SettlementConfig
from settlement.errors import ConservationError
from settlement.ledger import (
    CARD_SERVICE,
    FIXED_PARTY,
    PAYEE_ROLE_OF_TERMINAL,
    Account,
    Role,
)
from settlement.tally import ADJUSTMENT_ENTRY, BEFORE_SEGMENT, BankLine, Tally

# Fee rates are in basis points of a payee's net for the cycle.
BASIS_POINTS = 10_000


class Position(msgspec.Struct, frozen=True, array_like=True):
    """One party's account over the cycle: `credit_fen` is what the card service came to
    owe it, `debit_fen` what it came to owe the card service."""

    account: str  # ledger.Account
    party: str
    role: str  # ledger.Role
    bank: str  # the bank that holds this party's account for this flow
    count: int
    debit_fen: int
    credit_fen: int

    @property
    def net_fen(self) -> int:
        return self.credit_fen - self.debit_fen


class PayoutLine(msgspec.Struct, frozen=True, array_like=True):
    """Payments at one terminal (or by ISO 8583, source "iso8583") for a payee."""

    source: str
    payments: int
    payment_fen: int
    reversals: int
    reversal_fen: int


class Payout(msgspec.Struct, frozen=True):
    payee: str
    role: str
    bank: str
    account: str  # "" when none is configured: the payout is withheld
    lines: list[PayoutLine]
    gross_fen: int
    reversed_fen: int
    fee_rate_bp: int
    fee_fen: int

    @property
    def net_fen(self) -> int:
        return self.gross_fen - self.reversed_fen

    @property
    def payout_fen(self) -> int:
        return self.net_fen - self.fee_fen

    @property
    def withheld(self) -> bool:
        return not self.account


class BankNet(msgspec.Struct, frozen=True, array_like=True):
    """What crosses between the card service and one bank: + the bank receives."""

    bank: str
    debit_fen: int
    credit_fen: int

    @property
    def net_fen(self) -> int:
        return self.credit_fen - self.debit_fen


class BatchLine(msgspec.Struct, frozen=True, array_like=True):
    batch_id: str
    part: int
    credits: int
    credit_fen: int
    rejections: int


class CyclePositions(msgspec.Struct, frozen=True):
    records: int
    financial: int
    movement_fen: int
    fee_fen: int
    positions: list[Position]  # sorted by (bank, account, party)
    payouts: list[Payout]  # sorted by payee
    bank_nets: list[BankNet]  # sorted by bank; every partner bank, zero ones too
    bank_lines: list[BankLine]  # in journal order
    batches: list[BatchLine]
    terminals_after: list[tuple[str, str, str]]  # (terminal, owner, kind) at the close


class _Row:
    __slots__ = ("bank", "count", "credit_fen", "debit_fen", "role")

    def __init__(self, role: Role, bank: str) -> None:
        self.role = role
        self.bank = bank
        self.count = 0
        self.debit_fen = 0
        self.credit_fen = 0


class _Book:
    """Positions being gathered, by (account, party)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Account, str], _Row] = {}

    def post(
        self, account: Account, party: str, role: Role, bank: str, count: int, fen: int
    ) -> None:
        """`fen` signed: + credits the party, - debits it."""
        self.post_pair(account, party, role, bank, count, max(-fen, 0), max(fen, 0))

    def post_pair(
        self,
        account: Account,
        party: str,
        role: Role,
        bank: str,
        count: int,
        debit_fen: int,
        credit_fen: int,
    ) -> None:
        row = self.rows.get((account, party))
        if row is None:
            row = self.rows[(account, party)] = _Row(role, bank)
        elif (row.role, row.bank) != (role, bank):
            raise ConservationError(
                f"{party} ({account}) appears as {row.role} at {row.bank} and {role} at {bank}"
            )
        row.count += count
        row.debit_fen += debit_fen
        row.credit_fen += credit_fen

    def positions(self) -> list[Position]:
        out = [
            Position(account, party, row.role, row.bank, row.count, row.debit_fen, row.credit_fen)
            for (account, party), row in self.rows.items()
        ]
        out.sort(key=lambda p: (p.bank, p.account, p.party))
        return out


def build_positions(
    tallies: Iterable[Tally],
    terminals_before: Mapping[str, tuple[str, str]],
    config: SettlementConfig,
) -> CyclePositions:
    """Positions of one cycle from its tallies in journal order. `terminals_before` is the
    terminal registry (terminal -> (owner, kind)) as of the cycle's first record."""
    builder = _Builder(terminals_before, config)
    for tally in tallies:
        builder.add(tally)
    return builder.finish()


class _Builder:
    def __init__(
        self, terminals_before: Mapping[str, tuple[str, str]], config: SettlementConfig
    ) -> None:
        self.config = config
        self.registry = dict(terminals_before)
        self.book = _Book()
        self.payee_lines: dict[tuple[str, Role], list[PayoutLine]] = {}
        self.records = self.financial = self.movement_fen = self.purse_net_fen = 0
        self.bank_lines: list[BankLine] = []
        self.batches: list[BatchLine] = []

    def payee_bank(self, payee: str) -> str:
        account = self.config.payee_account(payee)
        return self.config.float_bank if account is None else account.bank

    def owner_of(
        self, terminal: str, registration: int, in_segment: Mapping[int, tuple[str, str]]
    ) -> tuple[str, Role]:
        found = (
            self.registry.get(terminal)
            if registration == BEFORE_SEGMENT
            else in_segment.get(registration)
        )
        if found is None:
            raise ConservationError(f"payments at terminal {terminal}, never registered")
        owner, kind = found
        role = PAYEE_ROLE_OF_TERMINAL.get(kind)
        if role is None:
            raise ConservationError(f"terminal {terminal} of kind {kind!r}: no payee role")
        return owner, role

    def add(self, tally: Tally) -> None:
        # Resolved against the registry as of the segment's start; the segment's own
        # registrations apply after.
        in_segment = {index: (owner, kind) for index, _t, owner, kind in tally.registrations}
        self._terminal_payments(tally, in_segment)
        self._iso_payments(tally)
        self._other_legs(tally)
        for _index, terminal, owner, kind in tally.registrations:
            self.registry[terminal] = (owner, kind)
        self.records += tally.records
        self.financial += tally.financial
        self.movement_fen += tally.movement_fen
        self.purse_net_fen += tally.purse_net_fen
        self.bank_lines.extend(tally.bank_lines)
        self.batches.extend(BatchLine(*batch) for batch in tally.batches)

    def _terminal_payments(self, tally: Tally, in_segment: Mapping[int, tuple[str, str]]) -> None:
        book, float_bank = self.book, self.config.float_bank
        for (terminal, registration), counts in sorted(tally.decisions.items()):
            paid, paid_fen, reversed_, reversed_fen = counts
            owner, role = self.owner_of(terminal, registration, in_segment)
            count = paid + reversed_
            book.post_pair(
                Account.PAYEE, owner, role, self.payee_bank(owner), count, reversed_fen, paid_fen
            )
            book.post_pair(
                Account.PURSE,
                CARD_SERVICE,
                Role.CARD_SERVICE,
                float_bank,
                count,
                paid_fen,
                reversed_fen,
            )
            self.payee_lines.setdefault((owner, role), []).append(
                PayoutLine(terminal, paid, paid_fen, reversed_, reversed_fen)
            )
        for (terminal, registration), counts in sorted(tally.offline.items()):
            taps, charge_fen, paid_fen = counts
            owner, role = self.owner_of(terminal, registration, in_segment)
            book.post(Account.PAYEE, owner, role, self.payee_bank(owner), taps, charge_fen)
            _post_fixed(book, Account.PURSE, self.config, taps, paid_fen, 0)
            _post_fixed(book, Account.PURSE_DEBT, self.config, taps, charge_fen - paid_fen, 0)
            self.payee_lines.setdefault((owner, role), []).append(
                PayoutLine(f"{terminal}/offline", taps, charge_fen, 0, 0)
            )

    def _iso_payments(self, tally: Tally) -> None:
        for (payee, role_name), counts in sorted(tally.iso_payees.items()):
            paid, paid_fen, reversed_, reversed_fen = counts
            role = Role(role_name)
            self.book.post_pair(
                Account.PAYEE,
                payee,
                role,
                self.payee_bank(payee),
                paid + reversed_,
                reversed_fen,
                paid_fen,
            )
            self.payee_lines.setdefault((payee, role), []).append(
                PayoutLine("iso8583", paid, paid_fen, reversed_, reversed_fen)
            )
        _post_fixed(self.book, Account.PURSE, self.config, 0, *tally.iso_purse)
        _post_fixed(self.book, Account.MEDICAL, self.config, 0, *tally.iso_medical)
        for line in tally.bank_lines:
            self.book.post(Account.CARD_BANK, line.bank, Role.BANK, line.bank, 1, line.amount_fen)
            if line.entry == ADJUSTMENT_ENTRY:  # the other side of an adjustment
                self.book.post(
                    Account.SUSPENSE,
                    CARD_SERVICE,
                    Role.CARD_SERVICE,
                    self.config.float_bank,
                    1,
                    -line.amount_fen,
                )

    def _other_legs(self, tally: Tally) -> None:
        book, config = self.book, self.config
        loads, load_fen = tally.desk_loads
        _post_fixed(book, Account.PURSE, config, loads, 0, load_fen)
        _post_fixed(book, Account.DESK, config, loads, load_fen, 0)
        refunds, refund_purse, refund_debt = tally.refunds
        _post_fixed(book, Account.PURSE, config, refunds, refund_purse, 0)
        _post_fixed(book, Account.PURSE_DEBT, config, refunds, 0, refund_debt)
        _post_fixed(book, Account.DESK, config, refunds, 0, refund_purse - refund_debt)
        settled, settled_fen = tally.medical_settled
        _post_fixed(book, Account.MEDICAL, config, settled, settled_fen, 0)
        _post_fixed(book, Account.MEDICAL_OUT, config, settled, 0, settled_fen)
        for funder_id, (credits, fen) in sorted(tally.funders.items()):
            funder = config.funder(funder_id)
            if funder is None:
                raise ConservationError(f"subsidies from {funder_id}, not a configured funder")
            book.post(Account.FUNDER, funder_id, Role.FUNDER, funder.bank, credits, -fen)

    def finish(self) -> CyclePositions:
        _check_movements(self.book.positions(), self.movement_fen, self.purse_net_fen)
        payouts = _payouts(self.book, self.payee_lines, self.config)
        fee_fen = sum(payout.fee_fen for payout in payouts)
        positions = self.book.positions()
        bank_nets = _bank_nets(positions, self.config)
        _check_fees_and_payouts(positions, payouts, fee_fen)
        check_bank_nets(positions, bank_nets)
        return CyclePositions(
            records=self.records,
            financial=self.financial,
            movement_fen=self.movement_fen,
            fee_fen=fee_fen,
            positions=positions,
            payouts=payouts,
            bank_nets=bank_nets,
            bank_lines=self.bank_lines,
            batches=self.batches,
            terminals_after=sorted(
                (terminal, owner, kind) for terminal, (owner, kind) in self.registry.items()
            ),
        )


def _post_fixed(
    book: _Book, account: Account, config: SettlementConfig, count: int, debit: int, credit: int
) -> None:
    if not (count or debit or credit):
        return
    party, role = FIXED_PARTY[account]
    bank = config.medical_fund_bank if role is Role.MEDICAL_FUND else config.float_bank
    book.post_pair(account, party, role, bank, count, debit, credit)


def _payouts(
    book: _Book, payee_lines: dict[tuple[str, Role], list[PayoutLine]], config: SettlementConfig
) -> list[Payout]:
    """One payout per payee; posts each fee (payee -fee, card service +fee)."""
    out = []
    for (payee, role), unmerged in sorted(payee_lines.items()):
        lines = _merge_lines(unmerged)
        gross = sum(line.payment_fen for line in lines)
        reversed_fen = sum(line.reversal_fen for line in lines)
        rate = config.fee_rate_bp(role)
        net = gross - reversed_fen
        # Rounded down, in the payee's favour; nothing on a net that went the other way.
        fee = net * rate // BASIS_POINTS if net > 0 else 0
        account = config.payee_account(payee)
        bank = config.float_bank if account is None else account.bank
        if fee:
            book.post(Account.FEE, payee, role, bank, 1, -fee)
            book.post(Account.FEE, CARD_SERVICE, Role.CARD_SERVICE, config.float_bank, 1, fee)
        out.append(
            Payout(
                payee=payee,
                role=role,
                bank=bank,
                account="" if account is None else account.account,
                lines=lines,
                gross_fen=gross,
                reversed_fen=reversed_fen,
                fee_rate_bp=rate,
                fee_fen=fee,
            )
        )
    return out


def _merge_lines(lines: list[PayoutLine]) -> list[PayoutLine]:
    """One line per source: a terminal's payments were tallied segment by segment."""
    merged: dict[str, list[int]] = {}
    for line in lines:
        sums = merged.setdefault(line.source, [0, 0, 0, 0])
        sums[0] += line.payments
        sums[1] += line.payment_fen
        sums[2] += line.reversals
        sums[3] += line.reversal_fen
    return [PayoutLine(source, *sums) for source, sums in sorted(merged.items())]


def _bank_nets(positions: list[Position], config: SettlementConfig) -> list[BankNet]:
    sums: dict[str, list[int]] = {bank: [0, 0] for bank in config.partner_banks}
    for position in positions:
        pair = sums.setdefault(position.bank, [0, 0])
        # A party's net at its bank is what crosses with the card service there.
        if position.net_fen < 0:
            pair[0] -= position.net_fen
        else:
            pair[1] += position.net_fen
    return [BankNet(bank, debit, credit) for bank, (debit, credit) in sorted(sums.items())]


def _check_movements(positions: list[Position], movement_fen: int, purse_net_fen: int) -> None:
    debit = sum(p.debit_fen for p in positions)
    credit = sum(p.credit_fen for p in positions)
    if not debit == credit == movement_fen:
        raise ConservationError(
            f"positions debit {debit} and credit {credit} fen, but the cycle's records moved "
            f"{movement_fen}"
        )
    purse = sum(p.net_fen for p in positions if p.account == Account.PURSE)
    if purse != purse_net_fen:
        raise ConservationError(
            f"purse float position {purse} fen, but the records moved the purses {purse_net_fen}"
        )


def _check_fees_and_payouts(positions: list[Position], payouts: list[Payout], fee_fen: int) -> None:
    fees = [p for p in positions if p.account == Account.FEE]
    if sum(p.debit_fen for p in fees) != fee_fen or sum(p.credit_fen for p in fees) != fee_fen:
        raise ConservationError(f"fee positions do not balance the {fee_fen} fen of fees")
    if sum(p.net_fen for p in positions) != 0:
        raise ConservationError("positions do not add up to zero")
    by_payee: dict[str, int] = {}
    for p in positions:
        if p.account in (Account.PAYEE, Account.FEE) and p.party != CARD_SERVICE:
            by_payee[p.party] = by_payee.get(p.party, 0) + p.net_fen
    for payout in payouts:
        if by_payee.get(payout.payee) != payout.payout_fen:
            raise ConservationError(
                f"payout to {payout.payee} is {payout.payout_fen} fen, its positions "
                f"{by_payee.get(payout.payee)}"
            )


def check_bank_nets(positions: list[Position], bank_nets: list[BankNet]) -> None:
    """Each bank's net is the sum of its parties' positions, and the nets add up to zero."""
    total = 0
    for net in bank_nets:
        parties = sum(p.net_fen for p in positions if p.bank == net.bank)
        if parties != net.net_fen:
            raise ConservationError(f"bank {net.bank}: net {net.net_fen}, its parties {parties}")
        total += net.net_fen
    if total:
        raise ConservationError(f"the banks' multilateral nets add up to {total}, not 0")
