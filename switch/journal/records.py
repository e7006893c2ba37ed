"""Journal records. The journal is the system of record: caches are a replay of it.

Records hold no personal data in plain text: holders appear as a keyed token and a masked
form only. Money is integer fen.
"""

from __future__ import annotations

import msgspec

from settlement.records import (
    CycleClosed,
    CycleSettled,
    ReconciliationResolved,
    SubsidyCredited,
)
from switch.banks.records import (
    BankLateReply,
    BankRequestSent,
    HoldExpired,
    IsoPayment,
    SafDelivered,
    SafQueued,
)
from switch.casework.records import (
    ComplaintAnswered,
    ComplaintAssigned,
    ComplaintFiled,
    IntegrityEntryAdded,
    RecoveryOrdered,
    ReviewFlagRaised,
    ReviewFlagResolved,
)
from switch.ecard.records import EcardBound, EcardUnbound, QrKeyActivated, QrKeyRetired
from switch.lifecycle.records import (
    BalancesCarried,
    BankFunctionChanged,
    CardApplied,
    LifecycleStep,
    MedicalSettled,
    PinSet,
    PinTried,
    PurseRefunded,
)
from switch.privacy.records import PersonalDataRead
from switch.transit.rides import TransitState


class TerminalRegistered(msgspec.Struct, tag="terminal", array_like=True, frozen=True):
    terminal_id: str
    kind: str
    owner: str  # transit operator or merchant the terminal belongs to
    key_check_value: str  # identifies the key in the key store without revealing it
    # Transit gates and validators: the line or network, station, entry/exit (or "").
    line: str = ""
    station: str = ""
    direction: str = ""


class CardIssued(msgspec.Struct, tag="card", array_like=True, frozen=True):
    card: str
    holder_token: str
    holder_masked: str
    category: str
    status: str
    purse_fen: int
    medical_fen: int
    bank_id: str
    bank_account_masked: str


class CardStatusChanged(msgspec.Struct, tag="status", array_like=True, frozen=True):
    time_ms: int
    card: str
    status: str
    reason: str


class Decision(msgspec.Struct, tag="decision", array_like=True, frozen=True, gc=False):
    """One authorisation decision on a terminal request.

    moved_fen is the signed change to the card's transit purse (negative: debit); replay
    applies exactly that, never re-deciding. balance_fen is the purse after the decision,
    checked again on replay.

    Not tracked by the cyclic garbage collector: the idempotency windows keep the last
    thousand or so of every terminal's, and a tracked Decision (one holding a TransitState
    is) made every full collection walk them all. Its fields are scalars and a frozen
    TransitState of scalars, so it can never be part of a reference cycle.
    """

    time_ms: int
    terminal_time_ms: int  # as the terminal stated it: evidence in disputes
    terminal_id: str
    seq: int
    kind: str
    card: str
    amount_fen: int
    original_seq: int
    code: str
    moved_fen: int
    balance_fen: int | None
    reference: int
    detail: str = ""  # request content beyond the fields above (a tap's stop)
    transit: TransitState | None = None  # the card's transit state after an approved tap
    # A `scan` (kind "scan", card = the physical card the QR code stands for): the code's
    # nonce when it could be read (retries are matched by it), and until when the switch
    # must remember it as used (0: this decision did not consume it). Replay rebuilds the
    # used-nonce store from these.
    qr_nonce: bytes = b""
    qr_forget_after_ms: int = 0


class OfflineTapApplied(msgspec.Struct, tag="offline", array_like=True, frozen=True):
    """One offline tap, priced at its own time: `paid_fen` from the purse, the rest of
    `charge_fen` added to the card's debt."""

    time_ms: int  # when the switch applied it
    terminal_id: str
    offline_seq: int
    tap_time_ms: int
    card: str
    stop: str
    grey: bool
    code: str  # 00 priced; otherwise why it was not (unknown card, repeat tap, ...)
    charge_fen: int
    paid_fen: int
    purse_fen: int  # after
    debt_fen: int  # after
    transit: TransitState | None  # the card's next transit state, if this tap changed it


class FareTableActivated(msgspec.Struct, tag="fares", array_like=True, frozen=True):
    """A fare table version, in force for taps decided at or after `effective_ms`."""

    time_ms: int
    version: int
    effective_ms: int
    table: bytes  # switch.transit.fares.encode_fare_table


class EmergencyRelease(msgspec.Struct, tag="emergency", array_like=True, frozen=True):
    """Until `until_ms`, exits without an entry on `network` are let through free."""

    time_ms: int
    network: str
    until_ms: int


Record = (
    TerminalRegistered
    | CardIssued
    | CardStatusChanged
    | Decision
    | FareTableActivated
    | EmergencyRelease
    | OfflineTapApplied
    | QrKeyActivated
    | QrKeyRetired
    | EcardBound
    | EcardUnbound
    # the card lifecycle, personal-data reads and casework (switch/lifecycle, privacy,
    # casework: the service API)
    | CardApplied
    | LifecycleStep
    | PinSet
    | PinTried
    | BankFunctionChanged
    | MedicalSettled
    | PurseRefunded
    | BalancesCarried
    | PersonalDataRead
    | IntegrityEntryAdded
    | ComplaintFiled
    | ComplaintAssigned
    | ComplaintAnswered
    | RecoveryOrdered
    | ReviewFlagRaised
    | ReviewFlagResolved
    # ISO 8583 payments and the partner-bank links (switch/banks)
    | IsoPayment
    | BankRequestSent
    | SafQueued
    | SafDelivered
    | BankLateReply
    | HoldExpired
    # settlement cycles, subsidy batches and reconciliation (settlement/)
    | CycleClosed
    | CycleSettled
    | SubsidyCredited
    | ReconciliationResolved
)

encoder = msgspec.msgpack.Encoder()
decoder: msgspec.msgpack.Decoder[Record] = msgspec.msgpack.Decoder(Record)
