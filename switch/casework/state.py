"""The cases, rebuilt from the journal. Complaint steps are a table of data; an illegal
step names the complaint's state and the command."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from switch.casework.records import (
    CaseworkRecord,
    ComplaintAnswered,
    ComplaintAssigned,
    ComplaintFiled,
    IntegrityEntryAdded,
    RecoveryOrdered,
    ReviewFlagRaised,
    ReviewFlagResolved,
)
from switch.errors import IllegalTransition, StateError

T = TypeVar("T")


class Violation(enum.StrEnum):
    """What an integrity-file entry records (regulation art. 12, 13, 17)."""

    LENDING = "lending"  # renting or lending the card
    IMPERSONATION = "impersonation"  # using another's card
    FRAUD = "fraud"  # fraudulently obtaining social-insurance funds


class ComplaintKind(enum.StrEnum):
    COMPLAINT = "complaint"
    REPORT = "report"  # a report of someone else's violation (举报)


class Channel(enum.StrEnum):
    DESK = "desk"
    PHONE = "phone"
    ONLINE = "online"
    PARTNER = "partner"


class ComplaintState(enum.StrEnum):
    FILED = "filed"
    ASSIGNED = "assigned"
    ANSWERED = "answered"


class ComplaintCommand(enum.StrEnum):
    ASSIGN = "assign"
    ANSWER = "answer"


COMPLAINT_STEPS: Mapping[ComplaintState, Mapping[ComplaintCommand, ComplaintState]] = {
    ComplaintState.FILED: {
        ComplaintCommand.ASSIGN: ComplaintState.ASSIGNED,
        ComplaintCommand.ANSWER: ComplaintState.ANSWERED,
    },
    ComplaintState.ASSIGNED: {
        ComplaintCommand.ASSIGN: ComplaintState.ASSIGNED,  # handed on to someone else
        ComplaintCommand.ANSWER: ComplaintState.ANSWERED,
    },
    ComplaintState.ANSWERED: {},
}


def complaint_step(state: ComplaintState, command: ComplaintCommand) -> ComplaintState:
    target = COMPLAINT_STEPS[state].get(command)
    if target is None:
        raise IllegalTransition(f"complaint {state.value}", command.value)
    return target


class FlagOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


@dataclass
class Complaint:
    filed: ComplaintFiled
    state: ComplaintState = ComplaintState.FILED
    assignee: str = ""
    answered: ComplaintAnswered | None = None

    def overdue(self, now_ms: int) -> bool:
        return self.answered is None and now_ms > self.filed.due_ms


@dataclass
class Flag:
    raised: ReviewFlagRaised
    resolved: ReviewFlagResolved | None = None


class CaseworkState:
    def __init__(self) -> None:
        self.integrity: dict[int, IntegrityEntryAdded] = {}
        self.complaints: dict[int, Complaint] = {}
        self.recovery_orders: dict[int, RecoveryOrdered] = {}
        self.flags: dict[int, Flag] = {}

    def next_id(self, table: Mapping[int, object]) -> int:
        return max(table, default=0) + 1

    def apply(self, record: CaseworkRecord) -> None:
        if type(record) is IntegrityEntryAdded:
            self._new(self.integrity, record.entry_id, record)
        elif type(record) is ComplaintFiled:
            self._new(self.complaints, record.complaint_id, Complaint(record))
        elif type(record) is ComplaintAssigned:
            complaint = self._complaint(record.complaint_id)
            complaint.state = complaint_step(complaint.state, ComplaintCommand.ASSIGN)
            complaint.assignee = record.assignee
        elif type(record) is ComplaintAnswered:
            complaint = self._complaint(record.complaint_id)
            complaint.state = complaint_step(complaint.state, ComplaintCommand.ANSWER)
            complaint.answered = record
        elif type(record) is RecoveryOrdered:
            self._new(self.recovery_orders, record.order_id, record)
        elif type(record) is ReviewFlagRaised:
            self._new(self.flags, record.flag_id, Flag(record))
        elif type(record) is ReviewFlagResolved:
            flag = self.flags.get(record.flag_id)
            if flag is None or flag.resolved is not None:
                raise StateError(f"review flag {record.flag_id} resolved twice or unknown")
            flag.resolved = record
        else:
            raise AssertionError(f"unhandled casework record {type(record).__name__}")

    @staticmethod
    def _new(table: dict[int, T], key: int, value: T) -> None:
        if key in table:
            raise StateError(f"case {key} recorded twice")
        table[key] = value

    def _complaint(self, complaint_id: int) -> Complaint:
        complaint = self.complaints.get(complaint_id)
        if complaint is None:
            raise StateError(f"no complaint {complaint_id}")
        return complaint
