"""What the running switch keeps about settlement; changed only by settlement's journal
records, through Engine.apply, live and on replay.

    closes       cycle -> its CycleClosed (boundaries and business date)
    settled      cycle -> digest of its files
    batches      subsidy batch id -> digest and the parts journalled
    resolved     reconciliation exceptions already resolved

Small by design: one close a day, a few batches and exceptions; the money itself is
computed from the journal by settlement.cycle, never kept here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from settlement.errors import SettlementStateError
from settlement.records import (
    CycleClosed,
    CycleSettled,
    ReconciliationResolved,
    SettlementRecord,
    SubsidyCredited,
)


@dataclass
class BatchState:
    digest: str
    parts: int
    parts_seen: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.parts_seen) == self.parts


class SettlementState:
    def __init__(self) -> None:
        self.closes: dict[int, CycleClosed] = {}
        self.settled: dict[int, str] = {}
        self.batches: dict[str, BatchState] = {}
        self.resolved: set[tuple[int, str, str]] = set()  # (cycle, bank, entry)

    @property
    def open_cycle(self) -> int:
        return len(self.closes) + 1

    @property
    def last_close(self) -> CycleClosed | None:
        return self.closes.get(len(self.closes))

    def unsettled(self) -> list[int]:
        """Closed cycles whose files are not journalled as produced, oldest first: every one
        of them is settled, whatever its amount (a zero cycle too)."""
        return [cycle for cycle in sorted(self.closes) if cycle not in self.settled]

    def first_index(self, cycle: int) -> int:
        """Index of the cycle's first record (of the open cycle too)."""
        previous = self.closes.get(cycle - 1)
        return 0 if previous is None else previous.last_index + 1

    def apply(self, record: SettlementRecord) -> None:
        if type(record) is CycleClosed:
            self._close(record)
        elif type(record) is CycleSettled:
            if record.cycle not in self.closes:
                raise SettlementStateError(f"cycle {record.cycle} settled before it closed")
            if record.cycle in self.settled:
                raise SettlementStateError(f"cycle {record.cycle} settled twice")
            self.settled[record.cycle] = record.digest
        elif type(record) is SubsidyCredited:
            self._subsidy(record)
        elif type(record) is ReconciliationResolved:
            if record.cycle not in self.closes:
                raise SettlementStateError(f"resolution for cycle {record.cycle}, not closed")
            key = (record.cycle, record.bank_id, record.entry)
            if key in self.resolved:
                raise SettlementStateError(f"exception {key} resolved twice")
            self.resolved.add(key)
        else:
            raise AssertionError(f"unhandled settlement record {type(record).__name__}")

    def _close(self, record: CycleClosed) -> None:
        # Paired with the scheduler's check before journalling: cycles close in order, and a
        # close never reaches back before the previous one.
        if record.cycle != self.open_cycle:
            raise SettlementStateError(
                f"cycle {record.cycle} closed while cycle {self.open_cycle} is open"
            )
        previous = self.last_close
        if previous is not None:
            if record.last_index <= previous.last_index:
                raise SettlementStateError(
                    f"cycle {record.cycle} ends at record {record.last_index}, not after "
                    f"cycle {previous.cycle}'s end {previous.last_index}"
                )
            if record.cutover_ms <= previous.cutover_ms:
                raise SettlementStateError(
                    f"cycle {record.cycle}'s cutover is not after cycle {previous.cycle}'s"
                )
        elif record.last_index < -1:
            raise SettlementStateError(f"cycle {record.cycle} ends at record {record.last_index}")
        self.closes[record.cycle] = record

    def _subsidy(self, record: SubsidyCredited) -> None:
        if not 1 <= record.part <= record.parts:
            raise SettlementStateError(
                f"batch {record.batch_id}: part {record.part} of {record.parts}"
            )
        batch = self.batches.get(record.batch_id)
        if batch is None:
            batch = self.batches[record.batch_id] = BatchState(record.digest, record.parts)
        if (batch.digest, batch.parts) != (record.digest, record.parts):
            raise SettlementStateError(f"batch {record.batch_id} journalled with other content")
        if record.part in batch.parts_seen:
            raise SettlementStateError(f"batch {record.batch_id} part {record.part} twice")
        batch.parts_seen.add(record.part)
