"""Subsidy and benefit disbursement: a finance-bureau batch in, credit instructions to the
banks out (regulation art. 3: livelihood subsidy disbursement is one of the card's purposes).

All benefits and subsidies are paid into the card's financial (bank) account at its partner
bank, never into the capped transit purse; per-household subsidies go to the head of
household's card, per-person ones to the person's own card, and no one may receive for
someone else (facts.md, 财办〔2020〕37号). Citizen ID numbers are used only to compute the
holder token (switch.domain.identifiers) that finds the card; the journal and every report
carry masked numbers only.

    parse_batch(data)                       the CSV, checked as a whole (FileFormatError)
    validate(batch, directory, secret)      every row: accepted credit, or rejected + why
    batch_records(...)                      SubsidyCredited parts still to journal
    prepare_import(...) / import_batch(...) all of it, against a replayed engine or the
                                            running switch

The batch format (UTF-8, a byte-order mark tolerated):

    batch,<batch id>,<funder>,<item>,<rows>,<total fen>
    row,scope,household_id,relation,citizen_id,amount_fen
    1,person,,,420302196503150014,50000
    2,household,H0001,head,42030319580101002X,120000
    3,household,H0001,member,420304200002290037,0
"""

from __future__ import annotations

import contextlib
import csv
import enum
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import anyio

from settlement.config import SettlementConfig
from settlement.cycle import SETTLEMENT_FILE_MODE
from settlement.errors import BatchRefused, FileFormatError
from settlement.records import SubsidyCredit, SubsidyCredited, SubsidyRejection
from settlement.state import SettlementState
from switch.core import Switch
from switch.domain.identifiers import citizen_id_token, mask_citizen_id, normalise_citizen_id
from switch.domain.model import CardStatus
from switch.durable import write_atomically
from switch.engine import Engine
from switch.errors import InvalidIdentifier

# Rows are numbered 1..n and a credit's bank reference is "<batch>/<row, 6 digits>"; a
# programme batch is per district or township, far below a million rows.
BATCH_ROWS_MAX = 999_999
# Rows per journal record: a credit encodes to at most ~115 bytes (the longest fields
# allowed), so a part stays under half of the journal's 1 MiB record limit (a test checks
# the worst case).
PART_ROWS_MAX = 4_000
# One row's amount: above ¥100,000 no livelihood subsidy goes to one person or household;
# such a row is a typing error (fen entered as yuan x 100) until the bureau says otherwise.
ROW_AMOUNT_MAX_FEN = 10_000_000
# Batch ids go into bank references ("<batch>/<row>", and "<cycle>-SUBS-<batch>/<row>" for
# an adjustment, 40 columns): 1-20 characters.
BATCH_ID_SHAPE = re.compile(r"[A-Za-z0-9-]{1,20}")
HOUSEHOLD_ID_SHAPE = re.compile(r"[A-Za-z0-9-]{1,32}")
ITEM_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,32}")
HEADER = ("row", "scope", "household_id", "relation", "citizen_id", "amount_fen")
REPORTS = "subsidy"


class Reason(enum.StrEnum):
    MALFORMED_ROW = "malformed_row"
    INVALID_ID = "invalid_id"
    INVALID_AMOUNT = "invalid_amount"
    NO_ACTIVE_CARD = "no_active_card"
    SEVERAL_ACTIVE_CARDS = "several_active_cards"
    NO_BANK_ACCOUNT = "no_bank_account"
    DUPLICATE_PERSON = "duplicate_person"
    HOUSEHOLD_WITHOUT_HEAD = "household_without_head"
    HOUSEHOLD_SEVERAL_HEADS = "household_several_heads"
    HEAD_OF_SEVERAL_HOUSEHOLDS = "head_of_several_households"
    AMOUNT_ON_MEMBER = "amount_on_member"

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS = {
    Reason.MALFORMED_ROW: "scope must be person or household; relation head or member",
    Reason.INVALID_ID: "citizen ID fails its shape, birth date or check character",
    Reason.INVALID_AMOUNT: f"amount must be 1..{ROW_AMOUNT_MAX_FEN} fen (0 on member rows)",
    Reason.NO_ACTIVE_CARD: "the holder has no active card",
    Reason.SEVERAL_ACTIVE_CARDS: "the holder has more than one active card",
    Reason.NO_BANK_ACCOUNT: "the card's financial account is missing, lost or closed",
    Reason.DUPLICATE_PERSON: "the person already has a row in this batch",
    Reason.HOUSEHOLD_WITHOUT_HEAD: "the household has no head row: nobody to pay",
    Reason.HOUSEHOLD_SEVERAL_HEADS: "the household has more than one head row",
    Reason.HEAD_OF_SEVERAL_HOUSEHOLDS: "the person heads another household in this batch",
    Reason.AMOUNT_ON_MEMBER: "household subsidies are paid to the head: members carry 0",
}


class Row(NamedTuple):
    row: int
    scope: str
    household: str
    relation: str
    citizen_id: str  # as written; held in memory only while validating
    amount_fen: int


@dataclass(frozen=True)
class Batch:
    batch_id: str
    funder: str
    item: str
    rows: list[Row]
    total_fen: int
    digest: str  # SHA-256 of the file


class CardAccount(NamedTuple):
    card: str
    status: str
    bank_id: str
    bank_account_masked: str
    bank_function: str  # switch.lifecycle.state.BankStatus: active, lost, settled


class HolderDirectory(Protocol):
    def cards_of(self, holder_token: str) -> Sequence[CardAccount]: ...


class EngineDirectory:
    """The cards of each holder as the engine holds them (built once per import)."""

    def __init__(self, engine: Engine) -> None:
        self._by_holder: dict[str, list[CardAccount]] = {}
        files = engine.lifecycle.files
        for number, card in engine.cards.items():
            card_file = files.get(number)
            self._by_holder.setdefault(card.holder_token, []).append(
                CardAccount(
                    number,
                    card.status,
                    card.bank_id,
                    card.bank_account_masked,
                    "active" if card_file is None else card_file.bank,
                )
            )

    def cards_of(self, holder_token: str) -> Sequence[CardAccount]:
        return self._by_holder.get(holder_token, ())


@dataclass(frozen=True)
class Validation:
    credits: list[SubsidyCredit]
    rejections: list[SubsidyRejection]

    @property
    def credited_fen(self) -> int:
        return sum(credit.amount_fen for credit in self.credits)


# -- parsing ---------------------------------------------------------------------------------


def parse_batch(data: bytes, source: str) -> Batch:
    """The batch as a whole: header, column names, row numbering, control totals. A file
    that breaks any of these is refused whole (a truncated file is not a set of bad rows)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(source, 0, f"not UTF-8 at byte {exc.start}") from exc
    lines = list(csv.reader(io.StringIO(text, newline="")))
    if len(lines) < 2:
        raise FileFormatError(source, 0, "no batch header and column names")
    head = lines[0]
    if len(head) != 6 or head[0] != "batch":
        raise FileFormatError(source, 1, "first line must be batch,id,funder,item,rows,total_fen")
    _, batch_id, funder, item, rows_text, total_text = head
    if BATCH_ID_SHAPE.fullmatch(batch_id) is None:
        raise FileFormatError(source, 1, f"batch id {batch_id!r} is not 1-20 of A-Z a-z 0-9 -")
    if ITEM_SHAPE.fullmatch(item) is None:
        raise FileFormatError(source, 1, f"item {item!r} is not 1-32 of A-Z a-z 0-9 . _ -")
    stated_rows = _natural(rows_text, source, 1, "rows")
    stated_total = _natural(total_text, source, 1, "total_fen")
    if tuple(lines[1]) != HEADER:
        raise FileFormatError(source, 2, f"column names must be {','.join(HEADER)}")
    body = [line for line in lines[2:] if line != []]
    if len(body) > BATCH_ROWS_MAX:
        raise FileFormatError(source, 0, f"more than {BATCH_ROWS_MAX} rows")
    rows = []
    for number, line in enumerate(body, start=1):
        line_number = number + 2
        if len(line) != len(HEADER):
            raise FileFormatError(source, line_number, f"{len(line)} columns, not {len(HEADER)}")
        if _natural(line[0], source, line_number, "row") != number:
            raise FileFormatError(source, line_number, f"row number {line[0]}, expected {number}")
        amount = _natural(line[5], source, line_number, "amount_fen")
        rows.append(Row(number, line[1], line[2], line[3], line[4], amount))
    total = sum(row.amount_fen for row in rows)
    if (len(rows), total) != (stated_rows, stated_total):
        raise FileFormatError(
            source,
            0,
            f"header says {stated_rows} rows, {stated_total} fen; file holds "
            f"{len(rows)} rows, {total} fen",
        )
    return Batch(batch_id, funder, item, rows, total, hashlib.sha256(data).hexdigest())


def _natural(text: str, source: str, line: int, name: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise FileFormatError(source, line, f"{name} {text!r} is not a whole number")
    return int(text)


# -- validating --------------------------------------------------------------------------------


def validate(batch: Batch, directory: HolderDirectory, holder_secret: bytes) -> Validation:
    """Every row accepted (a credit) or rejected (a reason); member rows of a household
    are checked and produce neither when they are in order."""
    credits: list[SubsidyCredit] = []
    rejections: list[SubsidyRejection] = []
    ids: dict[int, str] = {}  # row -> normalised ID, for the rows that have a valid one

    def reject(row: Row, reason: Reason) -> None:
        rejections.append(SubsidyRejection(row.row, _masked(row, ids), reason))

    for row in batch.rows:
        with contextlib.suppress(InvalidIdentifier):  # rejected below, row by row
            ids[row.row] = normalise_citizen_id(row.citizen_id)
    persons: set[str] = set()
    households: dict[str, list[Row]] = {}
    heads: dict[str, str] = {}  # normalised ID of a head -> household
    for row in batch.rows:
        if row.scope == "person" and not row.household and not row.relation:
            if row.row not in ids:
                reject(row, Reason.INVALID_ID)
            elif not 0 < row.amount_fen <= ROW_AMOUNT_MAX_FEN:
                reject(row, Reason.INVALID_AMOUNT)
            elif ids[row.row] in persons:
                reject(row, Reason.DUPLICATE_PERSON)
            else:
                persons.add(ids[row.row])
                _credit(row, ids[row.row], directory, holder_secret, credits, reject)
        elif (
            row.scope == "household"
            and row.relation in ("head", "member")
            and HOUSEHOLD_ID_SHAPE.fullmatch(row.household)
        ):
            households.setdefault(row.household, []).append(row)
        else:
            reject(row, Reason.MALFORMED_ROW)
    for household, rows in sorted(households.items()):
        head_rows = [row for row in rows if row.relation == "head"]
        for row in rows:
            if row.row not in ids:
                reject(row, Reason.INVALID_ID)
            elif row.relation == "member" and row.amount_fen:
                reject(row, Reason.AMOUNT_ON_MEMBER)
            elif not head_rows:
                reject(row, Reason.HOUSEHOLD_WITHOUT_HEAD)
            elif len(head_rows) > 1:
                reject(row, Reason.HOUSEHOLD_SEVERAL_HEADS)
            elif row.relation == "head":
                citizen = ids[row.row]
                if not 0 < row.amount_fen <= ROW_AMOUNT_MAX_FEN:
                    reject(row, Reason.INVALID_AMOUNT)
                elif heads.setdefault(citizen, household) != household:
                    reject(row, Reason.HEAD_OF_SEVERAL_HOUSEHOLDS)
                else:
                    _credit(row, citizen, directory, holder_secret, credits, reject)
    credits.sort(key=lambda credit: credit.row)
    rejections.sort(key=lambda rejection: rejection.row)
    return Validation(credits, rejections)


def _masked(row: Row, ids: dict[int, str]) -> str:
    citizen = ids.get(row.row)
    return "" if citizen is None else mask_citizen_id(citizen)


def _credit(
    row: Row,
    citizen: str,
    directory: HolderDirectory,
    holder_secret: bytes,
    credits: list[SubsidyCredit],
    reject: Callable[[Row, Reason], None],
) -> None:
    active = [
        account
        for account in directory.cards_of(citizen_id_token(citizen, holder_secret))
        if account.status == CardStatus.ACTIVE
    ]
    if not active:
        reject(row, Reason.NO_ACTIVE_CARD)
        return
    if len(active) > 1:
        reject(row, Reason.SEVERAL_ACTIVE_CARDS)
        return
    (account,) = active
    if not account.bank_id or account.bank_function != "active":
        reject(row, Reason.NO_BANK_ACCOUNT)
        return
    credits.append(
        SubsidyCredit(
            row.row,
            account.card,
            account.bank_id,
            account.bank_account_masked,
            mask_citizen_id(citizen),
            row.amount_fen,
            row.scope,
            row.household,
        )
    )


# -- journalling -------------------------------------------------------------------------------


def batch_records(
    batch: Batch,
    validation: Validation,
    state: SettlementState,
    config: SettlementConfig,
    now_ms: int,
) -> list[SubsidyCredited]:
    """The parts of the batch not journalled yet: all of them the first time, none when the
    same file was imported before, the missing ones after an import cut short. The same
    batch id with other content is refused."""
    if config.funder(batch.funder) is None:
        raise BatchRefused(f"batch {batch.batch_id}: funder {batch.funder!r} is not configured")
    parts = _parts(batch, validation)
    known = state.batches.get(batch.batch_id)
    if known is not None and (known.digest, known.parts) != (batch.digest, len(parts)):
        raise BatchRefused(
            f"batch id {batch.batch_id} was imported with other content (file SHA-256 "
            f"{known.digest[:16]}...): a batch id names one file, forever"
        )
    seen = set() if known is None else known.parts_seen
    return [
        SubsidyCredited(
            now_ms,
            batch.batch_id,
            batch.digest,
            number,
            len(parts),
            batch.funder,
            batch.item,
            credits,
            rejections,
        )
        for number, (credits, rejections) in enumerate(parts, start=1)
        if number not in seen
    ]


def _parts(
    batch: Batch, validation: Validation
) -> list[tuple[list[SubsidyCredit], list[SubsidyRejection]]]:
    """Row ranges of PART_ROWS_MAX rows; a batch of no rows is one empty part."""
    parts = []
    for start in range(0, max(len(batch.rows), 1), PART_ROWS_MAX):
        low, high = start + 1, start + PART_ROWS_MAX
        parts.append(
            (
                [c for c in validation.credits if low <= c.row <= high],
                [r for r in validation.rejections if low <= r.row <= high],
            )
        )
    return parts


def render_report(batch: Batch, validation: Validation) -> bytes:
    """The rejected-rows report: masked IDs and reasons, in row order (CSV, quoted where a
    value holds a comma)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    members = len(batch.rows) - len(validation.credits) - len(validation.rejections)
    writer.writerow(
        [
            "#batch",
            "batch_id",
            "funder",
            "item",
            "rows",
            "credited",
            "members",
            "rejected",
            "credited_fen",
        ]
    )
    writer.writerow(
        [
            "batch",
            batch.batch_id,
            batch.funder,
            batch.item,
            len(batch.rows),
            len(validation.credits),
            members,
            len(validation.rejections),
            validation.credited_fen,
        ]
    )
    writer.writerow(["#rejected", "row", "holder_masked", "reason", "description"])
    writer.writerows(
        ["rejected", r.row, r.holder_masked, r.reason, Reason(r.reason).description]
        for r in validation.rejections
    )
    return out.getvalue().encode()


@dataclass(frozen=True)
class SubsidyImport:
    batch: Batch
    validation: Validation
    records: list[SubsidyCredited]  # to journal (empty: imported before)
    report: bytes

    @property
    def already_imported(self) -> bool:
        return not self.records


def prepare_import(
    data: bytes,
    source: str,
    engine: Engine,
    holder_secret: bytes,
    config: SettlementConfig,
    now_ms: int,
) -> SubsidyImport:
    batch = parse_batch(data, source)
    validation = validate(batch, EngineDirectory(engine), holder_secret)
    records = batch_records(batch, validation, engine.settlement, config, now_ms)
    return SubsidyImport(batch, validation, records, render_report(batch, validation))


def report_path(settlement_dir: Path, batch_id: str) -> Path:
    return settlement_dir / REPORTS / f"{batch_id}.csv"


def write_report(settlement_dir: Path, prepared: SubsidyImport) -> Path:
    path = report_path(settlement_dir, prepared.batch.batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, prepared.report, SETTLEMENT_FILE_MODE)
    return path


async def import_batch(
    switch: Switch,
    data: bytes,
    source: str,
    holder_secret: bytes,
    config: SettlementConfig,
    settlement_dir: Path,
) -> SubsidyImport:
    """Validate against the running switch's cards and journal the credits; returns once
    they are durable. The credits settle in the open cycle."""
    prepared = prepare_import(data, source, switch.engine, holder_secret, config, switch.clock())
    await anyio.to_thread.run_sync(write_report, settlement_dir, prepared)
    if prepared.records:
        await switch.journal.wait_durable(switch.submit(list(prepared.records)))
    return prepared
