"""The embedded store: queries answered from the engine's replayed state, personal data in
the holder file (switch/privacy/holders.py). Needs no server; always current."""

from __future__ import annotations

from pathlib import Path

import anyio

from switch.casework.state import Complaint, Flag
from switch.engine import Engine
from switch.privacy.holders import HolderFile
from switch.store.base import (
    AccessEntry,
    CardAccounts,
    ComplaintRow,
    IntegrityEntry,
    RecoveryOrder,
    ReviewFlag,
    Store,
)


def complaint_row(complaint: Complaint) -> ComplaintRow:
    filed = complaint.filed
    answered = complaint.answered
    return ComplaintRow(
        filed.complaint_id,
        filed.time_ms,
        filed.kind,
        filed.channel,
        filed.holder_token,
        filed.card,
        complaint.state.value,
        complaint.assignee,
        filed.due_ms,
        0 if answered is None else answered.time_ms,
        filed.text_sealed,
        b"" if answered is None else answered.answer_sealed,
    )


def flag_view(flag: Flag) -> ReviewFlag:
    raised, resolved = flag.raised, flag.resolved
    return ReviewFlag(
        raised.flag_id,
        raised.time_ms,
        raised.card,
        raised.rule,
        list(raised.evidence),
        raised.detail,
        "" if resolved is None else resolved.outcome,
        "" if resolved is None else resolved.actor,
    )


class EmbeddedStore(Store):
    kind = "embedded"

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self._engine = engine
        self._holders = HolderFile(data_dir)

    async def wait_current(self, position: int) -> None:
        return  # the engine applies every record before it is journalled

    async def put_holder(self, token: str, sealed: bytes) -> None:
        await anyio.to_thread.run_sync(self._holders.put, token, sealed)

    async def holder(self, token: str) -> bytes | None:
        return self._holders.get(token)

    async def card_accounts(self, card: str) -> CardAccounts | None:
        cached = self._engine.cards.get(card)
        if cached is None:
            return None
        return CardAccounts(
            card,
            cached.holder_token,
            cached.status.value,
            cached.purse_fen,
            cached.debt_fen,
            cached.medical_fen,
        )

    async def access_report(self, holder_token: str) -> list[AccessEntry]:
        return [
            AccessEntry(r.time_ms, r.actor, r.role, r.purpose, r.what, r.unmasked)
            for r in self._engine.audit.reads_of(holder_token)
        ]

    async def integrity_file(self, holder_token: str) -> list[IntegrityEntry]:
        return [
            IntegrityEntry(
                e.entry_id,
                e.time_ms,
                e.holder_token,
                e.card,
                e.violation,
                list(e.evidence),
                e.reference,
                e.actor,
            )
            for e in sorted(self._engine.casework.integrity.values(), key=lambda e: e.entry_id)
            if e.holder_token == holder_token
        ]

    async def complaints(self, overdue_at_ms: int | None) -> list[ComplaintRow]:
        return [
            complaint_row(c)
            for _, c in sorted(self._engine.casework.complaints.items())
            if overdue_at_ms is None or c.overdue(overdue_at_ms)
        ]

    async def complaint(self, complaint_id: int) -> ComplaintRow | None:
        found = self._engine.casework.complaints.get(complaint_id)
        return None if found is None else complaint_row(found)

    async def recovery_orders(self, holder_token: str) -> list[RecoveryOrder]:
        return [
            RecoveryOrder(
                o.order_id,
                o.time_ms,
                o.holder_token,
                o.card,
                o.amount_fen,
                o.fine_fen,
                list(o.evidence),
                o.reference,
                o.actor,
            )
            for _, o in sorted(self._engine.casework.recovery_orders.items())
            if o.holder_token == holder_token
        ]

    async def review_flags(self, open_only: bool) -> list[ReviewFlag]:
        return [
            flag_view(f)
            for _, f in sorted(self._engine.casework.flags.items())
            if not open_only or f.resolved is None
        ]

    async def aclose(self) -> None:
        self._holders.close()
