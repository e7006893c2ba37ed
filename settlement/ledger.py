"""What money each journal record moves: the interface between the journal and settlement.

Every record type in the journal's union is classified here, once, as one of

    a view       settlement decodes it (often only its leading fields, for speed) and
                 turns it into legs between accounts (settlement.tally)
    NO_MONEY     it moves no money, with the reason written down

A record type in neither (a new one another part of the switch added) decodes as
`Unclassified`, and settling a cycle that holds one raises UnclassifiedRecord: settlement
will not guess whether money moved. tests/settlement/test_ledger.py fails for such a type
until it is classified here.

Accounts (what a leg moves money in or out of) and the party that holds each:

    purse        holders' transit purses: the float the card service holds   onecard
    purse_debt   offline fares holders owe, advanced to the operators        onecard
    desk         service-desk cash: purse loads in, refunds out               onecard
    suspense     reconciliation adjustments                                   onecard
    fee          the card service's fee income (computed, not journalled)     onecard
    medical      medical insurance personal accounts                          medical-fund
    medical_out  personal accounts settled out to the medical platform        medical-fund
    card_bank    holders' financial accounts at a partner bank                the bank
    payee        merchants, transit operators, hospitals, billers             the payee
    funder       payers of subsidies and benefits                             the funder

A leg's sign is the change in what the card service owes the party: a tap of 200 fen is
purse -200 (the holders' float shrinks) and payee +200 (the operator is owed it). Every
record's legs add up to zero; settlement.positions checks that the positions built from
them add up to the movements counted record by record.
"""

from __future__ import annotations

import enum
import typing

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
from switch.journal.records import (
    CardIssued,
    CardStatusChanged,
    Decision,
    EmergencyRelease,
    FareTableActivated,
    OfflineTapApplied,
    Record,
    TerminalRegistered,
)
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


class Account(enum.StrEnum):
    PURSE = "purse"
    PURSE_DEBT = "purse_debt"
    DESK = "desk"
    SUSPENSE = "suspense"
    FEE = "fee"
    MEDICAL = "medical"
    MEDICAL_OUT = "medical_out"
    CARD_BANK = "card_bank"
    PAYEE = "payee"
    FUNDER = "funder"


class Role(enum.StrEnum):
    CARD_SERVICE = "card_service"
    MEDICAL_FUND = "medical_fund"
    BANK = "bank"
    FUNDER = "funder"
    # payee categories; fees are configured per category
    TRANSIT = "transit"
    MERCHANT = "merchant"
    HOSPITAL = "hospital"
    BILLER = "biller"


PAYEE_ROLES = frozenset({Role.TRANSIT, Role.MERCHANT, Role.HOSPITAL, Role.BILLER})
CARD_SERVICE = "onecard"
MEDICAL_FUND = "medical-fund"
# The party of each account that belongs to a fixed party.
FIXED_PARTY: dict[Account, tuple[str, Role]] = {
    Account.PURSE: (CARD_SERVICE, Role.CARD_SERVICE),
    Account.PURSE_DEBT: (CARD_SERVICE, Role.CARD_SERVICE),
    Account.DESK: (CARD_SERVICE, Role.CARD_SERVICE),
    Account.SUSPENSE: (CARD_SERVICE, Role.CARD_SERVICE),
    Account.MEDICAL: (MEDICAL_FUND, Role.MEDICAL_FUND),
    Account.MEDICAL_OUT: (MEDICAL_FUND, Role.MEDICAL_FUND),
}
# Who is paid for a purse payment at a terminal, by the terminal's kind
# (switch.domain.model.TerminalKind).
PAYEE_ROLE_OF_TERMINAL = {"gate": Role.TRANSIT, "pos": Role.MERCHANT, "medical": Role.HOSPITAL}
# Who is paid by an ISO 8583 payment, by its kind (switch.banks.state.Kind).
PAYEE_ROLE_OF_ISO_KIND = {"bill": Role.BILLER, "medical": Role.HOSPITAL}


# -- views: the leading fields settlement reads (trailing fields are skipped undecoded) -----


class DecisionView(msgspec.Struct, tag="decision", array_like=True, frozen=True, gc=False):
    time_ms: int
    terminal_time_ms: int
    terminal_id: str
    seq: int
    kind: str
    card: str
    amount_fen: int
    original_seq: int
    code: str
    moved_fen: int


class OfflineView(msgspec.Struct, tag="offline", array_like=True, frozen=True, gc=False):
    time_ms: int
    terminal_id: str
    offline_seq: int
    tap_time_ms: int
    card: str
    stop: str
    grey: bool
    code: str
    charge_fen: int
    paid_fen: int


class TerminalView(msgspec.Struct, tag="terminal", array_like=True, frozen=True):
    terminal_id: str
    kind: str
    owner: str


class CardIssuedView(msgspec.Struct, tag="card", array_like=True, frozen=True):
    card: str
    holder_token: str
    holder_masked: str
    category: str
    status: str
    purse_fen: int


# Journal type -> the type settlement decodes it as. A view's fields must be a prefix of
# its record's (tests check it), so that the two can never drift apart unnoticed.
VIEWS: dict[type, type] = {
    Decision: DecisionView,
    OfflineTapApplied: OfflineView,
    TerminalRegistered: TerminalView,
    CardIssued: CardIssuedView,  # purse loaded at issue: desk cash into the float
    IsoPayment: IsoPayment,
    PurseRefunded: PurseRefunded,
    MedicalSettled: MedicalSettled,
    SubsidyCredited: SubsidyCredited,
    ReconciliationResolved: ReconciliationResolved,
    CycleClosed: CycleClosed,  # no money: read to check the cycle's boundary
    CycleSettled: CycleSettled,
}

NO_MONEY: dict[type, str] = {
    CardStatusChanged: "a status change",
    FareTableActivated: "a fare table",
    EmergencyRelease: "exits let through free: no fare, no money",
    QrKeyActivated: "a QR signing key",
    QrKeyRetired: "a QR signing key",
    EcardBound: "an e-card binding",
    EcardUnbound: "an e-card binding",
    CardApplied: "an application",
    LifecycleStep: "the evidence of a lifecycle command; its money moves in its own records",
    PinSet: "a PIN hash",
    PinTried: "a PIN try",
    BankFunctionChanged: "the bank function's status",
    BalancesCarried: "balances move card to card within the same accounts: no position moves",
    PersonalDataRead: "an audit entry",
    IntegrityEntryAdded: "an integrity-file entry",
    ComplaintFiled: "casework",
    ComplaintAssigned: "casework",
    ComplaintAnswered: "casework",
    RecoveryOrdered: "an order to recover: the recovery is a payment when it happens",
    ReviewFlagRaised: "casework",
    ReviewFlagResolved: "casework",
    BankRequestSent: "a request on its way to a bank: its IsoPayment carries the money",
    SafQueued: "a message to deliver: the IsoPayment of the reversal carries the money",
    SafDelivered: "a delivery receipt",
    BankLateReply: "a late answer: the reversal queued at the timeout stands, nothing moves",
    HoldExpired: "a hold released: holds reserve, they never move money",
}


def _tag(struct_type: type) -> str:
    config = getattr(struct_type, "__struct_config__", None)
    tag = None if config is None else config.tag
    if not isinstance(tag, str):
        raise AssertionError(f"{struct_type.__name__} is not a tagged journal record")
    return tag


def _build() -> tuple[typing.Any, frozenset[type], dict[type, str]]:
    members: list[type] = []
    skipped: set[type] = set()
    unclassified: dict[type, str] = {}
    for record_type in typing.get_args(Record):
        tag = _tag(record_type)
        if record_type in VIEWS:
            members.append(VIEWS[record_type])
        elif record_type in NO_MONEY:
            # No fields: msgspec skips a record's trailing fields, so this reads the tag
            # alone and builds nothing.
            view = msgspec.defstruct(
                f"NoMoney_{tag}", [], tag=tag, array_like=True, frozen=True, gc=False
            )
            members.append(view)
            skipped.add(view)
        else:
            view = msgspec.defstruct(f"Unclassified_{tag}", [], tag=tag, array_like=True)
            members.append(view)
            unclassified[view] = record_type.__name__
    return typing.Union[tuple(members)], frozenset(skipped), unclassified  # noqa: UP007


_UNION, NO_MONEY_VIEWS, UNCLASSIFIED_VIEWS = _build()
# Decodes any journal payload into its view.
view_decoder: msgspec.msgpack.Decoder[typing.Any] = msgspec.msgpack.Decoder(_UNION)


def unclassified_record_types() -> list[str]:
    """Journal record types settlement does not know: should be none."""
    return sorted(UNCLASSIFIED_VIEWS.values())
