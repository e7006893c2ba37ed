"""Every personal-data read by holder, replayed from the journal: the holder's report of who
looked at their data, and the auditor's trail."""

from __future__ import annotations

from switch.privacy.records import PersonalDataRead


class AuditIndex:
    __slots__ = ("by_holder", "reads_total")

    def __init__(self) -> None:
        self.by_holder: dict[str, list[PersonalDataRead]] = {}
        self.reads_total = 0

    def apply(self, record: PersonalDataRead) -> None:
        self.by_holder.setdefault(record.holder_token, []).append(record)
        self.reads_total += 1

    def reads_of(self, holder_token: str) -> list[PersonalDataRead]:
        return list(self.by_holder.get(holder_token, ()))
