"""The repository interface of the service API, and the views it answers with.

Commands never go through the store: they are decided on the engine's state and journalled
(switch/lifecycle, switch/casework). The store answers queries — the access report, the
integrity file, complaints, recovery orders, review flags, the accounts projection — and
keeps holders' sealed personal data. Both implementations answer with these same views, and
the same behaviour tests run against both (tests/store).
"""

from __future__ import annotations

import abc

import anyio
import anyio.abc
import msgspec

from switch.journal import Journal


class AccessEntry(msgspec.Struct, frozen=True):
    """One read of a holder's personal data: the line of their access report."""

    time_ms: int
    actor: str
    role: str
    purpose: str
    what: str
    unmasked: bool


class IntegrityEntry(msgspec.Struct, frozen=True):
    entry_id: int
    time_ms: int
    holder_token: str
    card: str
    violation: str
    evidence: list[int]
    reference: str
    actor: str


class ComplaintRow(msgspec.Struct, frozen=True):
    complaint_id: int
    time_ms: int
    kind: str
    channel: str
    holder_token: str
    card: str
    state: str
    assignee: str
    due_ms: int
    answered_ms: int  # 0 while open
    text_sealed: bytes
    answer_sealed: bytes  # b"" while open


class RecoveryOrder(msgspec.Struct, frozen=True):
    order_id: int
    time_ms: int
    holder_token: str
    card: str
    amount_fen: int
    fine_fen: int
    evidence: list[int]
    reference: str
    actor: str


class ReviewFlag(msgspec.Struct, frozen=True):
    flag_id: int
    time_ms: int
    card: str
    rule: str
    evidence: list[int]
    detail: str
    outcome: str  # "" while open
    resolved_by: str


class CardAccounts(msgspec.Struct, frozen=True):
    """A card's accounts as the projection holds them (settlement reads these)."""

    card: str
    holder_token: str
    status: str
    purse_fen: int
    debt_fen: int
    medical_fen: int


class Store(abc.ABC):
    """Queries and personal data. `wait_current(position)` before a query makes it see
    every record up to `position` (the embedded store always does)."""

    kind: str

    async def run(
        self,
        journal: Journal,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Background work until cancelled (the PostgreSQL projector); none by default."""
        task_status.started()
        await anyio.sleep_forever()

    @abc.abstractmethod
    async def wait_current(self, position: int) -> None: ...

    @abc.abstractmethod
    async def put_holder(self, token: str, sealed: bytes) -> None: ...

    @abc.abstractmethod
    async def holder(self, token: str) -> bytes | None: ...

    @abc.abstractmethod
    async def card_accounts(self, card: str) -> CardAccounts | None: ...

    @abc.abstractmethod
    async def access_report(self, holder_token: str) -> list[AccessEntry]: ...

    @abc.abstractmethod
    async def integrity_file(self, holder_token: str) -> list[IntegrityEntry]: ...

    @abc.abstractmethod
    async def complaints(self, overdue_at_ms: int | None) -> list[ComplaintRow]:
        """All complaints, oldest first; only those open past their deadline at
        `overdue_at_ms` when it is given."""

    @abc.abstractmethod
    async def complaint(self, complaint_id: int) -> ComplaintRow | None: ...

    @abc.abstractmethod
    async def recovery_orders(self, holder_token: str) -> list[RecoveryOrder]: ...

    @abc.abstractmethod
    async def review_flags(self, open_only: bool) -> list[ReviewFlag]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...
