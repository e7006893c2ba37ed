"""Request and response bodies of the service API. The constraints here (patterns, ranges,
enumerations) are checked on every request and published in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from switch.casework.state import Channel, ComplaintKind, FlagOutcome, Violation
from switch.domain.model import CardCategory
from switch.lifecycle.commands import CancelReason, EligibilityBasis
from switch.lifecycle.machine import Stage
from switch.lifecycle.pins import PinFunction
from switch.privacy.purposes import Purpose
from switch.store.base import AccessEntry, IntegrityEntry, RecoveryOrder, ReviewFlag

CARD_PATTERN = "^[A-Z0-9]{9}$"
HOLDER_TOKEN_PATTERN = "^[0-9a-f]{64}$"
CardNumber = Annotated[str, msgspec.Meta(pattern=CARD_PATTERN)]
HolderToken = Annotated[str, msgspec.Meta(pattern=HOLDER_TOKEN_PATTERN)]
CitizenId = Annotated[str, msgspec.Meta(pattern="^[0-9]{17}[0-9Xx]$")]
Pin = Annotated[str, msgspec.Meta(pattern="^[0-9]{6}$")]
# A document number (a sanction decision, a court order): letters, digits, / and -, so that
# no free text (and so no personal data) reaches the journal through it.
Reference = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9/-]{1,64}$")]
Principal = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9._-]{0,63}$")]
Fen = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
PositiveFen = Annotated[int, msgspec.Meta(ge=1, le=10**12)]
# Journal indexes cited as evidence: 1 to 64 of them (casework.commands.EVIDENCE_MAX).
Evidence = Annotated[
    list[Annotated[int, msgspec.Meta(ge=0, le=2**62)]], msgspec.Meta(min_length=1, max_length=64)
]
# Free text of complaints and answers: sealed at rest. 2,000 characters is a long letter.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """Request bodies refuse unknown fields: a misspelt field must not be silently ignored."""


class ErrorAnswer(msgspec.Struct, frozen=True):
    error: str  # unauthorised | forbidden | not_found | illegal_transition | refused | invalid
    detail: str
    state: str | None = None  # illegal_transition: the state the request met
    command: str | None = None  # illegal_transition: the command refused


class ApplicationRequest(Body):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    citizen_id: CitizenId
    contact: Annotated[str, msgspec.Meta(max_length=128)]
    category: CardCategory
    basis: EligibilityBasis


class ApplicationAnswer(msgspec.Struct, frozen=True):
    card: str
    holder_token: str
    holder_masked: str
    stage: Stage


class IssueRequest(Body):
    bank_id: Annotated[str, msgspec.Meta(pattern="^[A-Z]{0,8}$")] = ""
    bank_account: Annotated[str, msgspec.Meta(pattern="^([0-9]{16,19})?$")] = ""


class ActivateRequest(Body):
    pin: Pin
    financial_pin: Pin | None = None


class LossRequest(Body):
    kind: Literal["temporary", "formal"]


class ReplaceRequest(Body):
    reason: Literal["lost", "stolen", "damaged", "renewal"]


class CancelRequest(Body):
    reason: CancelReason


class SanctionRequest(Body):
    reference: Reference


class MedicalSettlementRequest(Body):
    amount_fen: Fen


class BankFunctionRequest(Body):
    status: Literal["active", "lost", "settled"]


class PinVerifyRequest(Body):
    function: PinFunction
    pin: Pin


class PinVerifyAnswer(msgspec.Struct, frozen=True):
    verified: bool
    tries_left: int
    locked: bool


class PinResetRequest(Body):
    function: PinFunction
    pin: Pin


class EcardRequest(Body):
    level: Literal[1, 2]


class CardView(msgspec.Struct, frozen=True):
    card: str
    stage: Stage
    holder_token: str
    holder_masked: str
    category: str
    purse_fen: int
    debt_fen: int
    medical_fen: int
    bank_function: str  # active | lost | settled | none
    suspended: bool
    pin_locked: bool
    ecard_level: int  # 0: no e-card
    replaced_by: str
    replaces: str
    temporary_loss_until_ms: int


class ReplaceAnswer(msgspec.Struct, frozen=True):
    old_card: str
    new_card: CardView


class LookupRequest(Body):
    citizen_id: CitizenId
    purpose: Purpose


class HolderAnswer(msgspec.Struct, frozen=True):
    holder_token: str
    name: str
    citizen_id: str
    contact: str
    unmasked: bool
    cards: list[str]


class AccessReport(msgspec.Struct, frozen=True):
    holder_token: str
    reads: list[AccessEntry]


class IntegrityRequest(Body):
    card: CardNumber
    violation: Violation
    evidence: Evidence
    reference: Reference


class IntegrityFile(msgspec.Struct, frozen=True):
    holder_token: str
    entries: list[IntegrityEntry]


class ComplaintRequest(Body):
    kind: ComplaintKind
    channel: Channel
    text: Text
    card: Annotated[str, msgspec.Meta(pattern="^([A-Z0-9]{9})?$")] = ""


class ComplaintView(msgspec.Struct, frozen=True):
    complaint_id: int
    time_ms: int
    kind: str
    channel: str
    card: str
    holder_token: str
    state: str
    assignee: str
    due_ms: int
    answered_ms: int
    overdue: bool
    text: str | None  # only GET /complaints/{id}, masked for roles that may not see it
    answer: str | None


class ComplaintList(msgspec.Struct, frozen=True):
    complaints: list[ComplaintView]


class AssignRequest(Body):
    assignee: Principal


class AnswerRequest(Body):
    text: Text


class RecoveryRequest(Body):
    card: CardNumber
    amount_fen: PositiveFen
    fine_fen: PositiveFen
    evidence: Evidence
    reference: Reference


class RecoveryOrders(msgspec.Struct, frozen=True):
    holder_token: str
    orders: list[RecoveryOrder]


class ReviewFlags(msgspec.Struct, frozen=True):
    flags: list[ReviewFlag]


class FlagResolveRequest(Body):
    outcome: FlagOutcome


class Done(msgspec.Struct, frozen=True):
    """A change that answers nothing else: durable once this arrives."""

    journal_position: int
