"""Journal records of the ISO 8583 channel and the partner-bank links.

Everything that moves money, places or releases a hold, or changes what the switch owes a
bank (a reversal or advice to deliver) is one of these, applied through Engine.apply, so a
replay rebuilds holds, stand-in usage, paid bills, payee positions, requests left pending
at a bank and the store-and-forward queues. They import nothing from the switch, so
switch.journal.records can include them in its union without an import cycle.
"""

from __future__ import annotations

import msgspec


class IsoPayment(msgspec.Struct, tag="iso_payment", array_like=True, frozen=True):
    """One decided ISO 8583 request: the answer and every leg it moved.

    Movements are signed (negative: out of the holder's account); `payee_fen` is the change
    to what the switch owes the payee (merchant, hospital or biller), so for every record
    purse + medical + bank + payee = 0: money is never made or lost, only moved.
    """

    time_ms: int
    terminal_id: str
    stan: str  # DE11
    transmission: str  # DE7
    mti: str  # the request's base MTI
    kind: str  # switch.banks.state.Kind
    card: str
    amount_fen: int  # DE4 as requested
    code: str
    reference: int  # DE37 of the answer; the bank request's RRN when one was sent
    content: str  # what a retransmission must repeat (duplicate detection)
    route: str = ""  # purse | medical | bank: the account paying (medical: and bank)
    purse_fen: int = 0
    medical_fen: int = 0
    bank_fen: int = 0  # approved by the bank, or stood in for it
    bank_id: str = ""
    bank_reference: int = 0  # the RRN the bank leg is booked under at the bank
    standin: bool = False
    timed_out: bool = False  # the bank did not answer in time (or before a restart)
    payee: str = ""
    payee_fen: int = 0
    original: int = 0  # reference of the payment reversed or completed
    hold_fen: int = 0  # + placed by a pre-authorisation, - released
    hold_expires_ms: int = 0
    bill: str = ""  # "biller/reference" of a bill payment
    balance_fen: int | None = None  # available balance disclosed (balance inquiry, 51)
    ledger_fen: int | None = None  # ledger balance disclosed (balance inquiry)


class BankRequestSent(msgspec.Struct, tag="bank_sent", array_like=True, frozen=True):
    """A request is on its way to a bank. Journalled before the bank sees it: a restart
    that finds it without its IsoPayment reverses it, since the bank may have acted."""

    time_ms: int
    reference: int  # the RRN (DE37) sent to the bank
    bank_id: str
    bank_mti: str
    bank_stan: str
    bank_transmission: str
    processing: str  # DE3 sent to the bank
    bank_amount_fen: int  # DE4 sent to the bank: the bank's leg
    deadline_ms: int
    terminal_id: str
    stan: str
    transmission: str
    mti: str
    kind: str
    card: str
    amount_fen: int
    content: str
    medical_fen: int = 0  # personal-account leg reserved until the bank answers
    payee: str = ""
    bill: str = ""


class SafQueued(msgspec.Struct, tag="saf", array_like=True, frozen=True):
    """A message the bank must receive, whatever happens: a reversal (0400) or an advice
    (0120, 0220). Retried with the repeat MTI until the bank acknowledges it."""

    time_ms: int
    entry: int  # unique; also the STAN sent (mod 10^6)
    bank_id: str
    mti: str
    reference: int  # DE37: the bank-side payment this concerns
    card: str
    amount_fen: int
    processing: str
    terminal_id: str
    original_mti: str = ""  # DE90 (reversals and completions)
    original_stan: str = ""
    original_transmission: str = ""


class SafDelivered(msgspec.Struct, tag="saf_done", array_like=True, frozen=True):
    time_ms: int
    bank_id: str
    entry: int
    code: str  # what the bank answered


class BankLateReply(msgspec.Struct, tag="bank_late", array_like=True, frozen=True):
    """A bank's answer that came after its request timed out: matched, and kept for
    reconciliation. It moves nothing: the reversal queued at the timeout stands."""

    time_ms: int
    bank_id: str
    reference: int
    code: str
    amount_fen: int


class HoldExpired(msgspec.Struct, tag="hold_expired", array_like=True, frozen=True):
    time_ms: int
    reference: int  # the pre-authorisation


BankRecord = IsoPayment | BankRequestSent | SafQueued | SafDelivered | BankLateReply | HoldExpired
# For isinstance(): which journal records switch.banks.state applies.
BANK_RECORDS = (IsoPayment, BankRequestSent, SafQueued, SafDelivered, BankLateReply, HoldExpired)
