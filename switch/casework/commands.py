"""Casework commands: a request and the time in, records out (or a ServiceError).

Evidence indexes are checked against the journal by the caller (the API reads those
records and checks they concern the card) before these run; here they must at least name
records that exist.
"""

from __future__ import annotations

from switch.casework.config import CaseworkConfig
from switch.casework.records import (
    ComplaintAnswered,
    ComplaintAssigned,
    ComplaintFiled,
    IntegrityEntryAdded,
    RecoveryOrdered,
    ReviewFlagResolved,
)
from switch.casework.state import (
    CaseworkState,
    Channel,
    ComplaintCommand,
    ComplaintKind,
    FlagOutcome,
    Violation,
    complaint_step,
)
from switch.errors import IllegalTransition, NotFound, Refused
from switch.journal.records import Record

DAY_MS = 86_400_000
# Art. 17: a fine of 2 to 5 times the amount fraudulently obtained.
FINE_MULTIPLE_MIN = 2
FINE_MULTIPLE_MAX = 5
# An entry or order cites at least one record and at most this many: a case file, not a dump.
EVIDENCE_MAX = 64


def check_evidence(evidence: list[int], journal_end: int) -> None:
    if not 0 < len(evidence) <= EVIDENCE_MAX:
        raise Refused(f"cite 1 to {EVIDENCE_MAX} journal records as evidence")
    for index in evidence:
        if not 0 <= index < journal_end:
            raise Refused(f"journal record {index} does not exist")


class Casework:
    def __init__(self, state: CaseworkState, config: CaseworkConfig) -> None:
        self.state = state
        self.config = config

    def add_integrity_entry(
        self,
        now_ms: int,
        actor: str,
        holder_token: str,
        card: str,
        violation: Violation,
        evidence: list[int],
        reference: str,
        journal_end: int,
    ) -> list[Record]:
        check_evidence(evidence, journal_end)
        entry_id = self.state.next_id(self.state.integrity)
        return [
            IntegrityEntryAdded(
                now_ms, entry_id, holder_token, card, violation.value, evidence, reference, actor
            )
        ]

    def file_complaint(
        self,
        now_ms: int,
        actor: str,
        kind: ComplaintKind,
        channel: Channel,
        holder_token: str,
        card: str,
        text_sealed: bytes,
        complaint_id: int,
    ) -> list[Record]:
        """`complaint_id` from next_complaint_id(): the sealed text is bound to it."""
        if complaint_id != self.next_complaint_id():
            raise Refused("complaint numbering moved on; file again")
        due_ms = now_ms + self.config.complaint_answer_days * DAY_MS
        return [
            ComplaintFiled(
                now_ms,
                complaint_id,
                kind.value,
                channel.value,
                holder_token,
                card,
                text_sealed,
                due_ms,
                actor,
            )
        ]

    def next_complaint_id(self) -> int:
        return self.state.next_id(self.state.complaints)

    def _complaint_step(self, complaint_id: int, command: ComplaintCommand) -> None:
        complaint = self.state.complaints.get(complaint_id)
        if complaint is None:
            raise NotFound(f"no complaint {complaint_id}")
        complaint_step(complaint.state, command)

    def assign(self, now_ms: int, actor: str, complaint_id: int, assignee: str) -> list[Record]:
        self._complaint_step(complaint_id, ComplaintCommand.ASSIGN)
        return [ComplaintAssigned(now_ms, complaint_id, assignee, actor)]

    def answer(
        self, now_ms: int, actor: str, complaint_id: int, answer_sealed: bytes
    ) -> list[Record]:
        self._complaint_step(complaint_id, ComplaintCommand.ANSWER)
        return [ComplaintAnswered(now_ms, complaint_id, answer_sealed, actor)]

    def order_recovery(
        self,
        now_ms: int,
        actor: str,
        holder_token: str,
        card: str,
        amount_fen: int,
        fine_fen: int,
        evidence: list[int],
        reference: str,
        journal_end: int,
    ) -> list[Record]:
        if amount_fen <= 0:
            raise Refused("the amount obtained must be positive")
        if not FINE_MULTIPLE_MIN * amount_fen <= fine_fen <= FINE_MULTIPLE_MAX * amount_fen:
            raise Refused(
                f"the fine must be {FINE_MULTIPLE_MIN} to {FINE_MULTIPLE_MAX} times the "
                f"amount: {FINE_MULTIPLE_MIN * amount_fen} to {FINE_MULTIPLE_MAX * amount_fen} fen"
            )
        check_evidence(evidence, journal_end)
        order_id = self.state.next_id(self.state.recovery_orders)
        return [
            RecoveryOrdered(
                now_ms,
                order_id,
                holder_token,
                card,
                amount_fen,
                fine_fen,
                evidence,
                reference,
                actor,
            )
        ]

    def resolve_flag(
        self, now_ms: int, actor: str, flag_id: int, outcome: FlagOutcome
    ) -> list[Record]:
        flag = self.state.flags.get(flag_id)
        if flag is None:
            raise NotFound(f"no review flag {flag_id}")
        if flag.resolved is not None:
            raise IllegalTransition(f"review flag {flag.resolved.outcome}", "resolve")
        return [ReviewFlagResolved(now_ms, flag_id, outcome.value, actor)]
