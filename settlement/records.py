"""Journal records of settlement. They import nothing from the switch, so
switch.journal.records can include them in its union without an import cycle.

`CycleClosed` is what makes cycles exact: a record belongs to the first cycle whose close
comes after it in the journal, so cycle N holds the records with indexes
`last_index(N-1) + 1 .. last_index(N)` whatever their own times say (an offline tap
uploaded late settles in the cycle that journalled it, and keeps its tap time).
Holders appear as masked ID numbers only; money is integer fen.
"""

from __future__ import annotations

import msgspec


class CycleClosed(msgspec.Struct, tag="cycle_closed", array_like=True, frozen=True):
    """Cycle `cycle` ends with journal record `last_index`, which is the record right
    before this one (checked when the journal is read back)."""

    time_ms: int
    cycle: int
    last_index: int  # -1: an empty journal's first cycle
    cutover_ms: int  # the scheduled cutover this close stands for (its business date)


class CycleSettled(msgspec.Struct, tag="cycle_settled", array_like=True, frozen=True):
    """The cycle's files were produced: `digest` (SHA-256 of the manifest, which lists
    every file's SHA-256) is what a re-run must reproduce byte for byte."""

    time_ms: int
    cycle: int
    digest: str
    records: int
    movement_fen: int


class SubsidyCredit(msgspec.Struct, array_like=True, frozen=True):
    """One accepted row: `amount_fen` to the financial account of `card` at `bank_id`."""

    row: int
    card: str
    bank_id: str
    bank_account_masked: str
    holder_masked: str
    amount_fen: int
    scope: str  # person | household (paid to the head of household)
    household: str


class SubsidyRejection(msgspec.Struct, array_like=True, frozen=True):
    row: int
    holder_masked: str  # "" when the row held no usable ID number
    reason: str  # settlement.subsidy.Reason


class SubsidyCredited(msgspec.Struct, tag="subsidy", array_like=True, frozen=True):
    """One part of a finance-bureau batch: the credits and rejections of a run of its
    rows. A batch is journalled in parts so that no record nears the journal's record size
    limit; each part is idempotent by (batch_id, part), so an import cut short by a crash
    is completed by importing the same file again."""

    time_ms: int
    batch_id: str
    digest: str  # SHA-256 of the batch file: the same id with other content is refused
    part: int  # 1-based
    parts: int
    funder: str
    item: str
    credits: list[SubsidyCredit]
    rejections: list[SubsidyRejection]


class ReconciliationResolved(msgspec.Struct, tag="recon_resolved", array_like=True, frozen=True):
    """What was done about one reconciliation exception. `adjust` moves `amount_fen`
    between the bank and the card service's suspense account in the cycle that journals
    it (positive: the card service owes the bank more); the other actions move nothing."""

    time_ms: int
    cycle: int  # the cycle reconciled
    bank_id: str
    entry: str  # the exception's entry type and reference, "PAYM 000000001234"
    exception: str  # settlement.reconcile.Exception
    action: str  # settlement.reconcile.Action
    amount_fen: int
    actor: str
    note: str


SettlementRecord = CycleClosed | CycleSettled | SubsidyCredited | ReconciliationResolved
# For isinstance(): which journal records settlement.state applies.
SETTLEMENT_RECORDS = (CycleClosed, CycleSettled, SubsidyCredited, ReconciliationResolved)
