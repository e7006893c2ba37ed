"""What the switch keeps about ISO 8583 payments and its partner banks; changed only by
journal records (switch.banks.records), through the same `apply` live and on replay.

    windows          per terminal, recent (DE11, DE7) → outcome: duplicate detection
    holds            open pre-authorisations; held_purse_fen per card (available = balance
                     - holds)
    pending          requests sent to a bank and not yet decided
    saf              per bank, the reversals and advices still to deliver, oldest first
    standin_used_fen per (card, day): what stand-in has approved, against the floor limit
    bills            paid bill references (biller/reference → payment)
    positions_fen    what the switch owes each payee (merchant, hospital, biller)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from switch.banks.records import (
    BankLateReply,
    BankRecord,
    BankRequestSent,
    HoldExpired,
    IsoPayment,
    SafDelivered,
    SafQueued,
)
from switch.banks.stats import BankStatistics
from switch.domain.model import Card
from switch.errors import StateError

# Shiyan is UTC+8: the stand-in floor is per calendar day there.
DAY_OFFSET_MS = 8 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
# Timed-out bank requests remembered so that their late replies are matched: an hour of
# timeouts at a rate no healthy switch sees, and far longer than any bank answers late.
TIMED_OUT_REMEMBERED_MAX = 65_536
# Stand-in usage is kept for today and yesterday only (a floor is per day).
STANDIN_DAYS_KEPT = 2


class Kind(enum.StrEnum):
    PURCHASE = "purchase"
    PREAUTH = "preauth"
    COMPLETION = "completion"
    BALANCE = "balance"
    BILL = "bill"
    MEDICAL = "medical"
    REVERSAL = "reversal"


class Route(enum.StrEnum):
    PURSE = "purse"
    MEDICAL = "medical"  # the personal account, and the bank for the remainder
    BANK = "bank"


def day_of(time_ms: int) -> int:
    return (time_ms + DAY_OFFSET_MS) // DAY_MS


WindowKey = tuple[str, str]  # (DE11, DE7)


class Outcome:
    __slots__ = ("payment", "reversed")

    def __init__(self, payment: IsoPayment) -> None:
        self.payment = payment
        self.reversed = False


class Hold:
    __slots__ = ("bank_id", "card", "expires_ms", "fen", "key", "payment")

    def __init__(self, payment: IsoPayment) -> None:
        self.payment = payment
        self.card = payment.card
        self.fen = payment.hold_fen
        self.bank_id = payment.bank_id
        self.expires_ms = payment.hold_expires_ms
        self.key = (payment.terminal_id, payment.stan, payment.transmission)


class PaymentState:
    def __init__(self, window_entries_max: int) -> None:
        self.window_entries_max = window_entries_max
        self.windows: dict[str, dict[WindowKey, Outcome]] = {}
        self.by_reference: dict[int, Outcome] = {}
        self.holds: dict[int, Hold] = {}
        self.holds_by_key: dict[tuple[str, str, str], int] = {}
        self.held_purse_fen: dict[str, int] = {}
        self.reserved_medical_fen: dict[str, int] = {}
        self.pending: dict[int, BankRequestSent] = {}
        self.pending_keys: dict[tuple[str, str, str], int] = {}
        self.pending_bills: set[str] = set()
        self.saf: dict[str, dict[int, SafQueued]] = {}
        self.timed_out: dict[int, str] = {}  # reference → bank
        self.standin_used_fen: dict[tuple[str, int], int] = {}
        self.standin_approvals_total = 0
        self.bills: dict[str, int] = {}
        self.positions_fen: dict[str, int] = {}
        self.late_replies_total = 0
        self.next_reference = 1
        # This process's counters (metrics): not state, and not rebuilt by replay.
        self.statistics = BankStatistics()

    # -- queries -----------------------------------------------------------------------------

    def purse_available(self, card: Card) -> int:
        return card.purse_fen - self.held_purse_fen.get(card.number, 0)

    def medical_available(self, card: Card) -> int:
        return card.medical_fen - self.reserved_medical_fen.get(card.number, 0)

    def outcome(self, terminal_id: str, key: WindowKey) -> Outcome | None:
        window = self.windows.get(terminal_id)
        return None if window is None else window.get(key)

    def standin_used(self, card: str, time_ms: int) -> int:
        return self.standin_used_fen.get((card, day_of(time_ms)), 0)

    def saf_depth(self) -> int:
        return sum(len(queue) for queue in self.saf.values())

    def saf_oldest_ms(self) -> int | None:
        oldest = [next(iter(queue.values())).time_ms for queue in self.saf.values() if queue]
        return min(oldest) if oldest else None

    # -- apply -------------------------------------------------------------------------------

    def apply(self, record: BankRecord, cards: Mapping[str, Card]) -> None:
        if type(record) is IsoPayment:
            self._payment(record, cards)
        elif type(record) is BankRequestSent:
            self._sent(record)
        elif type(record) is SafQueued:
            self.saf.setdefault(record.bank_id, {})[record.entry] = record
            self._reference(record.entry)
        elif type(record) is SafDelivered:
            queue = self.saf.get(record.bank_id, {})
            if queue.pop(record.entry, None) is None:
                raise StateError(f"store-and-forward entry {record.entry} delivered twice")
        elif type(record) is BankLateReply:
            self.late_replies_total += 1
            self.timed_out.pop(record.reference, None)
        elif type(record) is HoldExpired:
            self._release_hold(record.reference)
        else:
            raise AssertionError(f"unhandled record {type(record).__name__}")

    def _reference(self, reference: int) -> None:
        if reference >= self.next_reference:
            self.next_reference = reference + 1

    def _sent(self, record: BankRequestSent) -> None:
        if record.reference in self.pending:
            raise StateError(f"bank request {record.reference} sent twice")
        self.pending[record.reference] = record
        self.pending_keys[(record.terminal_id, record.stan, record.transmission)] = record.reference
        if record.medical_fen:
            self.reserved_medical_fen[record.card] = (
                self.reserved_medical_fen.get(record.card, 0) + record.medical_fen
            )
        if record.bill:
            self.pending_bills.add(record.bill)
        self._reference(record.reference)

    def _unpend(self, reference: int) -> None:
        sent = self.pending.pop(reference, None)
        if sent is None:
            return
        del self.pending_keys[(sent.terminal_id, sent.stan, sent.transmission)]
        if sent.medical_fen:
            left = self.reserved_medical_fen[sent.card] - sent.medical_fen
            if left:
                self.reserved_medical_fen[sent.card] = left
            else:
                del self.reserved_medical_fen[sent.card]
        self.pending_bills.discard(sent.bill)

    def _payment(self, payment: IsoPayment, cards: Mapping[str, Card]) -> None:
        if payment.purse_fen + payment.medical_fen + payment.bank_fen + payment.payee_fen:
            raise StateError(f"payment {payment.reference} does not balance")
        self._unpend(payment.reference)
        if payment.purse_fen or payment.medical_fen:
            card = cards.get(payment.card)
            if card is None:
                raise StateError(f"payment {payment.reference} for unknown card {payment.card}")
            card.purse_fen += payment.purse_fen
            card.medical_fen += payment.medical_fen
            if card.purse_fen < 0 or card.medical_fen < 0:
                raise StateError(f"payment {payment.reference} overdraws card {payment.card}")
        if payment.payee_fen:
            self.positions_fen[payment.payee] = (
                self.positions_fen.get(payment.payee, 0) + payment.payee_fen
            )
        if payment.hold_fen > 0:
            hold = Hold(payment)
            self.holds[payment.reference] = hold
            self.holds_by_key[hold.key] = payment.reference
            if payment.route == Route.PURSE:
                self.held_purse_fen[hold.card] = self.held_purse_fen.get(hold.card, 0) + hold.fen
        elif payment.hold_fen < 0:
            self._release_hold(payment.original)
        if payment.standin:
            key = (payment.card, day_of(payment.time_ms))
            used = -payment.bank_fen or payment.hold_fen  # the bank's leg, stood in for
            self.standin_used_fen[key] = self.standin_used_fen.get(key, 0) + used
            self.standin_approvals_total += 1
            self._forget_old_standin(key[1])
        if payment.timed_out:
            self.timed_out[payment.reference] = payment.bank_id
            if len(self.timed_out) > TIMED_OUT_REMEMBERED_MAX:
                del self.timed_out[next(iter(self.timed_out))]
        if payment.kind == Kind.BILL and payment.code == "00":
            self.bills[payment.bill] = payment.reference
        if payment.kind == Kind.REVERSAL and payment.code == "00":
            original = self.by_reference.get(payment.original)
            if original is not None:
                original.reversed = True
                if original.payment.kind == Kind.BILL:
                    self.bills.pop(original.payment.bill, None)
        self._remember(payment)
        self._reference(payment.reference)
        self._reference(payment.bank_reference)

    def _remember(self, payment: IsoPayment) -> None:
        outcome = Outcome(payment)
        window = self.windows.setdefault(payment.terminal_id, {})
        window[(payment.stan, payment.transmission)] = outcome
        self.by_reference[payment.reference] = outcome
        # STANs wrap at 999,999, so the window is the most recent entries by arrival; a
        # retransmission comes within seconds, far inside it.
        while len(window) > self.window_entries_max:
            evicted = window.pop(next(iter(window)))
            self.by_reference.pop(evicted.payment.reference, None)

    def _release_hold(self, reference: int) -> None:
        hold = self.holds.pop(reference, None)
        if hold is None:
            return  # completed, reversed or expired already: a release happens once
        del self.holds_by_key[hold.key]
        if hold.payment.route == Route.PURSE:
            left = self.held_purse_fen[hold.card] - hold.fen
            if left:
                self.held_purse_fen[hold.card] = left
            else:
                del self.held_purse_fen[hold.card]

    def _forget_old_standin(self, today: int) -> None:
        if len(self.standin_used_fen) % 1024:
            return  # sweep now and then, not on every approval
        floor = today - STANDIN_DAYS_KEPT
        self.standin_used_fen = {k: v for k, v in self.standin_used_fen.items() if k[1] > floor}
