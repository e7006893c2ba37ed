"""PostgreSQL (asyncpg): holders' sealed personal data, and a projection of the journal.

The projector follows the journal's durable records (switch/store/tail.py) and writes each
batch in one transaction: the raw records with COPY into `journal`, the rows of the tables
the service API queries (audit reads, integrity entries, recovery orders, review flags with
COPY; complaints and card accounts by upsert), and the next index to read in `projection`.
The position commits with the rows, so after a crash it resumes exactly where the last
committed batch ended: nothing is projected twice or skipped. Memory is bounded by the
batch size: the journal on disk is the queue.

asyncpg runs on asyncio only; on trio the service falls back to the embedded store
(switch/api/service.py says so in the log).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from switch.casework.records import (
    ComplaintAnswered,
    ComplaintAssigned,
    ComplaintFiled,
    IntegrityEntryAdded,
    RecoveryOrdered,
    ReviewFlagRaised,
    ReviewFlagResolved,
)
from switch.errors import StoreUnavailable
from switch.journal import Journal, Record
from switch.journal.feed import JournalFeed
from switch.journal.records import (
    CardIssued,
    CardStatusChanged,
    Decision,
    OfflineTapApplied,
)
from switch.lifecycle.records import BalancesCarried, MedicalSettled, PurseRefunded
from switch.privacy.holders import FILE_NAME as HOLDER_FILE
from switch.privacy.holders import HolderFile
from switch.privacy.records import PersonalDataRead
from switch.store.base import (
    AccessEntry,
    CardAccounts,
    ComplaintRow,
    IntegrityEntry,
    RecoveryOrder,
    ReviewFlag,
    Store,
)
from switch.store.config import StoreConfig
from switch.store.migrate import migrate
from switch.store.tail import JournalTail

log = logging.getLogger("onecard.store")

Connection = asyncpg.Connection | PoolConnectionProxy
JOURNAL_COLUMNS = ("idx", "tag", "time_ms", "card", "terminal_id", "code", "moved_fen", "body")
_json = msgspec.json.Encoder()


def _journal_row(index: int, record: Record) -> tuple[Any, ...]:
    tag = type(record).__struct_config__.tag
    time_ms = getattr(record, "time_ms", None)
    card = getattr(record, "card", None) or getattr(record, "old_card", None) or None
    terminal = getattr(record, "terminal_id", None) or None
    code = getattr(record, "code", None) if type(record) in (Decision, OfflineTapApplied) else None
    moved = record.moved_fen if type(record) is Decision else None
    return (index, tag, time_ms, card, terminal, code, moved, _json.encode(record).decode())


class _Batch:
    """The rows one batch of records turns into."""

    def __init__(self) -> None:
        self.journal: list[tuple[Any, ...]] = []
        self.audit: list[tuple[Any, ...]] = []
        self.integrity: list[tuple[Any, ...]] = []
        self.recovery: list[tuple[Any, ...]] = []
        self.flags: list[tuple[Any, ...]] = []
        self.flag_outcomes: list[tuple[Any, ...]] = []
        self.complaints_new: list[tuple[Any, ...]] = []
        self.complaint_steps: list[tuple[Any, ...]] = []
        self.cards_new: list[tuple[Any, ...]] = []
        # card -> (status, purse, debt, medical, index); None: unchanged by this batch
        self.card_patches: dict[str, list[Any]] = {}

    def _patch(self, card: str, index: int) -> list[Any]:
        patch = self.card_patches.get(card)
        if patch is None:
            patch = self.card_patches[card] = [None, None, None, None, index]
        patch[4] = index
        return patch

    def add(self, index: int, record: Record) -> None:
        self.journal.append(_journal_row(index, record))
        kind = type(record)
        if kind is Decision:
            assert isinstance(record, Decision)
            if record.moved_fen:
                self._patch(record.card, index)[1] = record.balance_fen
        elif kind is OfflineTapApplied:
            assert isinstance(record, OfflineTapApplied)
            # An unknown card's tap (code 14) matches no row: the update is a no-op.
            patch = self._patch(record.card, index)
            patch[1], patch[2] = record.purse_fen, record.debt_fen
        elif kind is CardIssued:
            assert isinstance(record, CardIssued)
            self.cards_new.append(
                (
                    record.card,
                    record.holder_token,
                    record.holder_masked,
                    record.category,
                    record.status,
                    record.purse_fen,
                    record.medical_fen,
                    record.bank_id,
                    record.bank_account_masked,
                    index,
                )
            )
        elif kind is CardStatusChanged:
            assert isinstance(record, CardStatusChanged)
            self._patch(record.card, index)[0] = record.status
        elif kind is MedicalSettled:
            assert isinstance(record, MedicalSettled)
            self._patch(record.card, index)[3] = 0
        elif kind is PurseRefunded:
            assert isinstance(record, PurseRefunded)
            patch = self._patch(record.card, index)
            patch[1] = patch[2] = 0
        elif kind is BalancesCarried:
            assert isinstance(record, BalancesCarried)
            old = self._patch(record.old_card, index)
            old[1] = old[2] = old[3] = 0
            new = self._patch(record.new_card, index)  # issued empty in the same batch
            new[1], new[2], new[3] = record.purse_fen, record.debt_fen, record.medical_fen
        elif kind is PersonalDataRead:
            assert isinstance(record, PersonalDataRead)
            self.audit.append(
                (
                    index,
                    record.time_ms,
                    record.actor,
                    record.role,
                    record.holder_token,
                    record.purpose,
                    record.what,
                    record.unmasked,
                )
            )
        elif kind is IntegrityEntryAdded:
            assert isinstance(record, IntegrityEntryAdded)
            self.integrity.append(
                (
                    record.entry_id,
                    index,
                    record.time_ms,
                    record.holder_token,
                    record.card,
                    record.violation,
                    record.evidence,
                    record.reference,
                    record.actor,
                )
            )
        elif kind is RecoveryOrdered:
            assert isinstance(record, RecoveryOrdered)
            self.recovery.append(
                (
                    record.order_id,
                    record.time_ms,
                    record.holder_token,
                    record.card,
                    record.amount_fen,
                    record.fine_fen,
                    record.evidence,
                    record.reference,
                    record.actor,
                )
            )
        elif kind is ReviewFlagRaised:
            assert isinstance(record, ReviewFlagRaised)
            self.flags.append(
                (
                    record.flag_id,
                    record.time_ms,
                    record.card,
                    record.rule,
                    record.evidence,
                    record.detail,
                )
            )
        elif kind is ReviewFlagResolved:
            assert isinstance(record, ReviewFlagResolved)
            self.flag_outcomes.append((record.flag_id, record.outcome, record.actor))
        elif kind is ComplaintFiled:
            assert isinstance(record, ComplaintFiled)
            self.complaints_new.append(
                (
                    record.complaint_id,
                    record.time_ms,
                    record.kind,
                    record.channel,
                    record.holder_token,
                    record.card,
                    record.text_sealed,
                    record.due_ms,
                    "filed",
                )
            )
        elif kind is ComplaintAssigned:
            assert isinstance(record, ComplaintAssigned)
            self.complaint_steps.append(
                (record.complaint_id, "assigned", record.assignee, None, None)
            )
        elif kind is ComplaintAnswered:
            assert isinstance(record, ComplaintAnswered)
            self.complaint_steps.append(
                (record.complaint_id, "answered", None, record.time_ms, record.answer_sealed)
            )

    async def write(self, connection: Connection, next_index: int) -> None:
        """Everything in one transaction, position included (the caller opens it)."""
        copies: Iterable[tuple[str, list[tuple[Any, ...]], tuple[str, ...]]] = (
            ("journal", self.journal, JOURNAL_COLUMNS),
            (
                "audit_reads",
                self.audit,
                ("idx", "time_ms", "actor", "role", "holder_token", "purpose", "what", "unmasked"),
            ),
            (
                "integrity_entries",
                self.integrity,
                (
                    "entry_id",
                    "idx",
                    "time_ms",
                    "holder_token",
                    "card",
                    "violation",
                    "evidence",
                    "reference",
                    "actor",
                ),
            ),
            (
                "recovery_orders",
                self.recovery,
                (
                    "order_id",
                    "time_ms",
                    "holder_token",
                    "card",
                    "amount_fen",
                    "fine_fen",
                    "evidence",
                    "reference",
                    "actor",
                ),
            ),
            (
                "review_flags",
                self.flags,
                ("flag_id", "time_ms", "card", "rule", "evidence", "detail"),
            ),
            (
                "complaints",
                self.complaints_new,
                (
                    "complaint_id",
                    "time_ms",
                    "kind",
                    "channel",
                    "holder_token",
                    "card",
                    "text_sealed",
                    "due_ms",
                    "state",
                ),
            ),
        )
        for table, rows, columns in copies:
            if rows:
                await connection.copy_records_to_table(table, records=rows, columns=columns)
        if self.cards_new:
            await connection.copy_records_to_table(
                "cards",
                records=self.cards_new,
                columns=(
                    "card",
                    "holder_token",
                    "holder_masked",
                    "category",
                    "status",
                    "purse_fen",
                    "medical_fen",
                    "bank_id",
                    "bank_account_masked",
                    "updated_idx",
                ),
            )
        if self.card_patches:
            await connection.executemany(
                "UPDATE cards SET status = coalesce($2, status),"
                " purse_fen = coalesce($3, purse_fen), debt_fen = coalesce($4, debt_fen),"
                " medical_fen = coalesce($5, medical_fen), updated_idx = $6 WHERE card = $1",
                [(card, *patch) for card, patch in self.card_patches.items()],
            )
        if self.flag_outcomes:
            await connection.executemany(
                "UPDATE review_flags SET outcome = $2, resolved_by = $3 WHERE flag_id = $1",
                self.flag_outcomes,
            )
        if self.complaint_steps:
            await connection.executemany(
                "UPDATE complaints SET state = $2, assignee = coalesce($3, assignee),"
                " answered_ms = coalesce($4, answered_ms),"
                " answer_sealed = coalesce($5, answer_sealed) WHERE complaint_id = $1",
                self.complaint_steps,
            )
        await connection.execute(
            "UPDATE projection SET next_index = $1 WHERE name = 'journal'", next_index
        )


class PostgresStore(Store):
    kind = "postgres"

    def __init__(self, pool: asyncpg.Pool, config: StoreConfig, journal_dir: Path) -> None:
        self._pool = pool
        self._config = config
        self._journal_dir = journal_dir
        self.projected = 0  # next journal index to project
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    @classmethod
    async def connect(cls, config: StoreConfig, journal_dir: Path) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(config.dsn, min_size=1, max_size=config.pool_size)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        async with pool.acquire() as connection:
            version = await migrate(connection)
        store = cls(pool, config, journal_dir)
        await store.import_holder_file(journal_dir.parent)
        store.projected = await pool.fetchval(
            "SELECT next_index FROM projection WHERE name = 'journal'"
        )
        log.info(
            "store: PostgreSQL schema version %d, projected up to record %d",
            version,
            store.projected,
        )
        return store

    # -- the projector ---------------------------------------------------------------------

    async def run(
        self,
        journal: Journal,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        tail = JournalTail(self._journal_dir)
        feed = journal.feed()
        task_status.started()
        while True:
            await journal.wait_durable(self.projected + 1)
            await self.project_once(tail, journal.durable_position, feed)

    async def project_once(
        self, tail: JournalTail, durable_end: int, feed: JournalFeed | None = None
    ) -> int:
        """Project one batch of the records before `durable_end`; returns how many. They
        come from the journal's in-memory `feed` while it holds them, else from the files."""
        start = self.projected
        count_max = self._config.projection_batch_records
        records = None if feed is None else feed.take(start, durable_end, count_max)
        if records is None:
            records = await anyio.to_thread.run_sync(tail.read, start, durable_end, count_max)
        if not records:
            return 0
        batch = _Batch()
        for offset, record in enumerate(records):
            batch.add(start + offset, record)
        end = start + len(records)
        async with self._pool.acquire() as connection, connection.transaction():
            await batch.write(connection, end)
        self.projected = end
        while self._waiters and self._waiters[0][0] <= end:
            self._waiters.popleft()[1].set()
        return len(records)

    async def wait_current(self, position: int) -> None:
        if position <= self.projected:
            return
        event = anyio.Event()
        # Positions come from the journal, which only grows, so the deque stays sorted.
        self._waiters.append((position, event))
        with anyio.move_on_after(self._config.projection_wait_s):
            await event.wait()
            return
        raise StoreUnavailable(
            f"the PostgreSQL projection is at record {self.projected}, behind {position}"
        )

    # -- personal data ----------------------------------------------------------------------

    async def import_holder_file(self, data_dir: Path) -> int:
        """Holders the embedded registry holds (a data directory moving to PostgreSQL, or the
        demo's): copied in, sealed as they are; rows PostgreSQL has already win."""
        if not (data_dir / HOLDER_FILE).exists():
            return 0
        registry = HolderFile(data_dir)
        try:
            rows = registry.rows()
        finally:
            registry.close()
        await self._pool.executemany(
            "INSERT INTO holders (token, sealed) VALUES ($1, $2) ON CONFLICT (token) DO NOTHING",
            rows,
        )
        return len(rows)

    async def put_holder(self, token: str, sealed: bytes) -> None:
        await self._pool.execute(
            "INSERT INTO holders (token, sealed) VALUES ($1, $2) ON CONFLICT (token)"
            " DO UPDATE SET sealed = excluded.sealed, updated_at = now()",
            token,
            sealed,
        )

    async def holder(self, token: str) -> bytes | None:
        sealed: bytes | None = await self._pool.fetchval(
            "SELECT sealed FROM holders WHERE token = $1", token
        )
        return sealed

    # -- queries ---------------------------------------------------------------------------

    async def card_accounts(self, card: str) -> CardAccounts | None:
        row = await self._pool.fetchrow(
            "SELECT card, holder_token, status, purse_fen, debt_fen, medical_fen FROM cards"
            " WHERE card = $1",
            card,
        )
        return None if row is None else CardAccounts(*row)

    async def access_report(self, holder_token: str) -> list[AccessEntry]:
        rows = await self._pool.fetch(
            "SELECT time_ms, actor, role, purpose, what, unmasked FROM audit_reads"
            " WHERE holder_token = $1 ORDER BY idx",
            holder_token,
        )
        return [AccessEntry(*row) for row in rows]

    async def integrity_file(self, holder_token: str) -> list[IntegrityEntry]:
        rows = await self._pool.fetch(
            "SELECT entry_id, time_ms, holder_token, card, violation, evidence, reference, actor"
            " FROM integrity_entries WHERE holder_token = $1 ORDER BY entry_id",
            holder_token,
        )
        return [
            IntegrityEntry(
                row["entry_id"],
                row["time_ms"],
                row["holder_token"],
                row["card"],
                row["violation"],
                list(row["evidence"]),
                row["reference"],
                row["actor"],
            )
            for row in rows
        ]

    _COMPLAINT = (
        "SELECT complaint_id, time_ms, kind, channel, holder_token, card, state, assignee,"
        " due_ms, answered_ms, text_sealed, answer_sealed FROM complaints"
    )

    async def complaints(self, overdue_at_ms: int | None) -> list[ComplaintRow]:
        if overdue_at_ms is None:
            rows = await self._pool.fetch(self._COMPLAINT + " ORDER BY complaint_id")
        else:
            rows = await self._pool.fetch(
                self._COMPLAINT
                + " WHERE state <> 'answered' AND due_ms < $1 ORDER BY complaint_id",
                overdue_at_ms,
            )
        return [ComplaintRow(*row) for row in rows]

    async def complaint(self, complaint_id: int) -> ComplaintRow | None:
        row = await self._pool.fetchrow(self._COMPLAINT + " WHERE complaint_id = $1", complaint_id)
        return None if row is None else ComplaintRow(*row)

    async def recovery_orders(self, holder_token: str) -> list[RecoveryOrder]:
        rows = await self._pool.fetch(
            "SELECT order_id, time_ms, holder_token, card, amount_fen, fine_fen, evidence,"
            " reference, actor FROM recovery_orders WHERE holder_token = $1 ORDER BY order_id",
            holder_token,
        )
        return [
            RecoveryOrder(
                row["order_id"],
                row["time_ms"],
                row["holder_token"],
                row["card"],
                row["amount_fen"],
                row["fine_fen"],
                list(row["evidence"]),
                row["reference"],
                row["actor"],
            )
            for row in rows
        ]

    async def review_flags(self, open_only: bool) -> list[ReviewFlag]:
        rows = await self._pool.fetch(
            "SELECT flag_id, time_ms, card, rule, evidence, detail, outcome, resolved_by"
            " FROM review_flags WHERE NOT $1 OR outcome = '' ORDER BY flag_id",
            open_only,
        )
        return [
            ReviewFlag(
                row["flag_id"],
                row["time_ms"],
                row["card"],
                row["rule"],
                list(row["evidence"]),
                row["detail"],
                row["outcome"],
                row["resolved_by"],
            )
            for row in rows
        ]

    async def aclose(self) -> None:
        await self._pool.close()
