"""Journal records of casework. They import nothing from the switch, so
switch.journal.records can include them without a cycle.

Evidence is a list of journal record indexes: the decisions, status changes or flags that
prove what an entry says. Free text a person wrote (a complaint, an answer) may name people,
so it is journalled sealed with the personal-data key (switch/privacy/seal.py), with the
case's id as associated data.
"""

from __future__ import annotations

import msgspec


class IntegrityEntryAdded(msgspec.Struct, tag="integrity_entry", array_like=True, frozen=True):
    """A confirmed violation in the holder's integrity file (regulation art. 13)."""

    time_ms: int
    entry_id: int
    holder_token: str
    card: str
    violation: str  # casework.state.Violation
    evidence: list[int]
    reference: str  # the decision's document number
    actor: str


class ComplaintFiled(msgspec.Struct, tag="complaint_filed", array_like=True, frozen=True):
    time_ms: int
    complaint_id: int
    kind: str  # complaint | report
    channel: str  # desk | phone | online | partner
    holder_token: str  # "" when anonymous or not about a holder
    card: str
    text_sealed: bytes
    due_ms: int
    actor: str


class ComplaintAssigned(msgspec.Struct, tag="complaint_assigned", array_like=True, frozen=True):
    time_ms: int
    complaint_id: int
    assignee: str
    actor: str


class ComplaintAnswered(msgspec.Struct, tag="complaint_answered", array_like=True, frozen=True):
    time_ms: int
    complaint_id: int
    answer_sealed: bytes
    actor: str


class RecoveryOrdered(msgspec.Struct, tag="recovery_order", array_like=True, frozen=True):
    """Art. 17: the amount obtained by fraud is to be returned, with a fine of 2 to 5 times
    it."""

    time_ms: int
    order_id: int
    holder_token: str
    card: str
    amount_fen: int
    fine_fen: int
    evidence: list[int]
    reference: str
    actor: str


class ReviewFlagRaised(msgspec.Struct, tag="review_flag", array_like=True, frozen=True):
    """A misuse rule matched: for staff to review, never a sanction by itself."""

    time_ms: int
    flag_id: int
    card: str
    rule: str  # misuse.rules.Rule
    evidence: list[int]
    detail: str  # e.g. "14.2 km in 3 min"


class ReviewFlagResolved(msgspec.Struct, tag="review_resolved", array_like=True, frozen=True):
    time_ms: int
    flag_id: int
    outcome: str  # confirmed | dismissed
    actor: str


CaseworkRecord = (
    IntegrityEntryAdded
    | ComplaintFiled
    | ComplaintAssigned
    | ComplaintAnswered
    | RecoveryOrdered
    | ReviewFlagRaised
    | ReviewFlagResolved
)
CASEWORK_RECORDS = (
    IntegrityEntryAdded,
    ComplaintFiled,
    ComplaintAssigned,
    ComplaintAnswered,
    RecoveryOrdered,
    ReviewFlagRaised,
    ReviewFlagResolved,
)
