"""Reading one journal segment's part of a cycle into a Tally: the hot loop of settlement.

Sans-I/O in spirit: `tally_segment(job)` reads one file and returns plain data; it runs in
the calling process for small cycles and in worker processes (one segment each) for large
ones, and the two give the same Tally. Each record's chain value is recomputed from the
segment header on (the keyed hash proves the bytes are the ones the switch wrote, at that
index), so the CRC, which it subsumes, is not checked again.

Terminal payments are tallied per (terminal, registration in force): a worker cannot know
a terminal's owner for records before its own segment, so it keys them by the index of the
TerminalRegistered it saw in this segment, or -1 for "as registered before the segment";
settlement.positions resolves the keys in journal order.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec

from settlement.errors import ConservationError, JournalUnreadable, UnclassifiedRecord
from settlement.ledger import (
    NO_MONEY_VIEWS,
    PAYEE_ROLE_OF_ISO_KIND,
    UNCLASSIFIED_VIEWS,
    CardIssuedView,
    DecisionView,
    OfflineView,
    Role,
    TerminalView,
    view_decoder,
)
from settlement.records import (
    CycleClosed,
    CycleSettled,
    ReconciliationResolved,
    SubsidyCredited,
)
from switch.banks.records import IsoPayment
from switch.journal.segment import (
    CHAIN_SIZE,
    HEADER,
    LENGTH_MASK,
    LINK_END,
    LINK_LENGTH,
    MAGIC,
    NO_CHAIN,
    READABLE_VERSIONS,
    RECORD_BYTES_MAX,
    RECORD_HEADER,
    link_start,
)
from switch.lifecycle.records import MedicalSettled, PurseRefunded

# Entry types of the lines a bank books on holders' financial accounts (settlement files).
PAYMENT_ENTRY = "PAYM"  # an ISO 8583 payment's bank leg
SUBSIDY_ENTRY = "SUBS"  # a subsidy or benefit credit
ADJUSTMENT_ENTRY = "ADJS"  # a reconciliation adjustment
# Registration key of terminal tallies: registered before the segment's records.
BEFORE_SEGMENT = -1

_INDEX = struct.Struct(">Q")


class BankLine(NamedTuple):
    """One entry on a holder's financial account at a partner bank."""

    journal_index: int
    bank: str
    entry: str  # PAYMENT_ENTRY, SUBSIDY_ENTRY, ADJUSTMENT_ENTRY
    reference: str
    card: str
    account_masked: str
    amount_fen: int  # signed: + credits the holder's account, - debits it
    time_ms: int
    counterparty: str


@dataclass
class Tally:
    segment_first: int
    first_index: int  # of the range tallied
    # One past the last record read and verified: past the range's end when that falls
    # inside a link of the chain, which is read whole (segment.py).
    end_index: int = 0
    header_chain: bytes = b""
    end_chain: bytes = b""
    records: int = 0  # records of the range tallied
    financial: int = 0  # of which moved money
    movement_fen: int = 0  # money moved, counted record by record (the conservation check)
    purse_net_fen: int = 0  # signed change of the purse float, counted record by record
    # (terminal, registration index or BEFORE_SEGMENT) -> [payments, fen, reversals, fen]
    decisions: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    # (terminal, registration) -> [taps, charged fen, paid-from-purse fen]
    offline: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    registrations: list[tuple[int, str, str, str]] = field(default_factory=list)
    # (payee, role) -> [payments, fen, reversals, fen] of ISO 8583 payments
    iso_payees: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # [out, in] of the purse and medical legs of ISO 8583 payments
    iso_purse: list[int] = field(default_factory=lambda: [0, 0])
    iso_medical: list[int] = field(default_factory=lambda: [0, 0])
    bank_lines: list[BankLine] = field(default_factory=list)
    desk_loads: list[int] = field(default_factory=lambda: [0, 0])  # [cards, fen]
    refunds: list[int] = field(default_factory=lambda: [0, 0, 0])  # [count, purse, debt]
    medical_settled: list[int] = field(default_factory=lambda: [0, 0])  # [count, fen]
    # funder -> [credits, fen]
    funders: dict[str, list[int]] = field(default_factory=dict)
    # (batch, part, credits, fen, rejections)
    batches: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    closes: list[tuple[int, CycleClosed]] = field(default_factory=list)
    settles: list[tuple[int, CycleSettled]] = field(default_factory=list)


@dataclass(frozen=True)
class SegmentJob:
    path: str
    segment_first: int
    first_index: int  # tally records first_index..last_index; earlier ones are only chained
    last_index: int
    chain_key: bytes
    # Terminal registrations and cycle records alone: the history before a cycle, the catalog.
    reference_only: bool = False


def tally_segment(job: SegmentJob) -> Tally:
    try:
        data = Path(job.path).read_bytes()
    except OSError as exc:
        raise JournalUnreadable(f"{job.path}: {exc}") from exc
    if len(data) < HEADER.size:
        raise JournalUnreadable(f"{job.path}: shorter than its header")
    magic, version, first, header_chain = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version not in READABLE_VERSIONS or first != job.segment_first:
        raise JournalUnreadable(f"{job.path}: not a readable journal segment {first}")
    tally = Tally(job.segment_first, job.first_index, header_chain=header_chain)
    try:
        _scan(data, version, job, tally)
    except ConservationError as exc:
        raise ConservationError(f"{Path(job.path).name}: {exc}") from exc
    return tally


def _scan(data: bytes, version: int, job: SegmentJob, tally: Tally) -> None:
    # Locals only inside the loop: this runs ten million times a cycle.
    view = memoryview(data)
    size = len(data)
    unpack = RECORD_HEADER.unpack_from
    header_size = RECORD_HEADER.size
    keyed = hashlib.blake2b(key=job.chain_key, digest_size=CHAIN_SIZE)
    pack_index = _INDEX.pack
    decode = view_decoder.decode
    first_index, last_index = job.first_index, job.last_index
    reference_only = job.reference_only
    decisions, offline = tally.decisions, tally.offline
    registered: dict[str, int] = {}  # terminal -> index of its registration in this segment
    decisions_before: dict[str, list[int]] = {}  # terminals not registered in the segment
    chain = tally.header_chain
    per_record = version == 2  # format 2: a chain value per record (segment.py)
    link = None  # the link being read (format 3): its hash so far
    link_first = job.segment_first
    # The link's records in the range tallied: tallied once its chain value is checked.
    pending: list[tuple[int, memoryview]] = []
    pack_length = LINK_LENGTH.pack
    offset = HEADER.size
    at = job.segment_first  # index of the record at `offset`
    read_end = at  # one past the last record whose chain value was checked
    records = financial = movement = purse_net = 0
    while read_end <= last_index and offset < size:
        if size - offset < header_size:
            break
        length_field, _crc, stored = unpack(data, offset)
        length = length_field & LENGTH_MASK  # the top bits mark group and link ends
        begin = offset + header_size
        end = begin + length
        if not 0 < length <= RECORD_BYTES_MAX or end > size:
            break
        payload = view[begin:end]
        if not per_record:
            if link is None:
                link = link_start(job.chain_key, chain, at)
                link_first = at
            link.update(pack_length(length))
            link.update(payload)
            if not length_field & LINK_END:
                if stored != NO_CHAIN:
                    raise JournalUnreadable(
                        f"record {at} at byte {offset} of segment {job.segment_first}: a "
                        "chain value inside a link"
                    )
                if first_index <= at <= last_index:
                    pending.append((at, payload))
                offset = end
                at += 1
                continue
            expected = link.digest()
            link = None
        else:
            hasher = keyed.copy()
            hasher.update(chain)
            hasher.update(pack_index(at))
            hasher.update(payload)
            expected = hasher.digest()
            link_first = at
        if expected != stored:
            which = f"record {at}" if link_first == at else f"one of records {link_first}-{at}"
            raise JournalUnreadable(
                f"{which}, ending at byte {offset} of segment {job.segment_first}: chain value "
                "does not match (altered, moved, or not this journal's key)"
            )
        chain = expected
        if first_index <= at <= last_index:
            pending.append((at, payload))
        offset = end
        at += 1
        read_end = at
        ready, pending = pending, []
        for index, payload in ready:
            try:
                record = decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise JournalUnreadable(f"record {index}: chained but undecodable: {exc}") from exc
            kind = type(record)
            records += 1
            if reference_only:
                if kind is TerminalView:
                    tally.registrations.append(
                        (index, record.terminal_id, record.owner, record.kind)
                    )
                elif kind is CycleClosed:
                    tally.closes.append((index, record))
                elif kind is CycleSettled:
                    tally.settles.append((index, record))
            elif kind is DecisionView:
                moved = record.moved_fen
                if moved:
                    terminal = record.terminal_id
                    # Keyed by the terminal alone unless it was registered in this segment: a
                    # string's hash is cached, a tuple's is computed on every lookup.
                    if registered and terminal in registered:
                        key = (terminal, registered[terminal])
                        counts = decisions.get(key)
                        if counts is None:
                            counts = decisions[key] = [0, 0, 0, 0]
                    else:
                        counts = decisions_before.get(terminal)
                        if counts is None:
                            counts = decisions_before[terminal] = [0, 0, 0, 0]
                    if moved < 0:
                        counts[0] += 1
                        counts[1] -= moved
                        movement -= moved
                    else:
                        counts[2] += 1
                        counts[3] += moved
                        movement += moved
                    purse_net += moved
                    financial += 1
            elif kind is OfflineView:
                charge = record.charge_fen
                if charge:
                    terminal = record.terminal_id
                    key = (terminal, registered.get(terminal, BEFORE_SEGMENT))
                    counts = offline.get(key)  # offline uploads are few: no fast path
                    if counts is None:
                        counts = offline[key] = [0, 0, 0]
                    counts[0] += 1
                    counts[1] += charge
                    counts[2] += record.paid_fen
                    movement += charge
                    purse_net -= record.paid_fen
                    financial += 1
            elif kind in NO_MONEY_VIEWS:
                pass
            else:
                moved_fen, purse_fen = _rare(index, record, tally, registered)
                if moved_fen:
                    financial += 1
                    movement += moved_fen
                    purse_net += purse_fen
    for terminal, counts in decisions_before.items():
        decisions[(terminal, BEFORE_SEGMENT)] = counts
    tally.end_index = read_end
    tally.end_chain = chain
    tally.records = records
    tally.financial = financial
    tally.movement_fen = movement
    tally.purse_net_fen = purse_net


def _rare(index: int, record: object, tally: Tally, registered: dict[str, int]) -> tuple[int, int]:
    """The records that are not taps and purchases; returns (money moved, signed change of
    the purse float)."""
    kind = type(record)
    if kind is TerminalView:
        assert isinstance(record, TerminalView)
        registered[record.terminal_id] = index
        tally.registrations.append((index, record.terminal_id, record.owner, record.kind))
        return 0, 0
    if kind is IsoPayment:
        assert isinstance(record, IsoPayment)
        return _iso_payment(index, record, tally)
    if kind is CardIssuedView:
        assert isinstance(record, CardIssuedView)
        if record.purse_fen:
            tally.desk_loads[0] += 1
            tally.desk_loads[1] += record.purse_fen
        return record.purse_fen, record.purse_fen
    if kind is PurseRefunded:
        assert isinstance(record, PurseRefunded)
        if record.refund_fen != record.purse_fen - record.debt_fen:
            raise ConservationError(f"record {index}: refund is not purse less debt")
        if record.purse_fen:
            tally.refunds[0] += 1
            tally.refunds[1] += record.purse_fen
            tally.refunds[2] += record.debt_fen
        return record.purse_fen, -record.purse_fen
    if kind is MedicalSettled:
        assert isinstance(record, MedicalSettled)
        if record.amount_fen:
            tally.medical_settled[0] += 1
            tally.medical_settled[1] += record.amount_fen
        return record.amount_fen, 0
    if kind is SubsidyCredited:
        assert isinstance(record, SubsidyCredited)
        return _subsidy(index, record, tally), 0
    if kind is ReconciliationResolved:
        assert isinstance(record, ReconciliationResolved)
        if not record.amount_fen:
            return 0, 0
        tally.bank_lines.append(
            BankLine(
                index,
                record.bank_id,
                ADJUSTMENT_ENTRY,
                f"{record.cycle:06d}-{record.entry.replace(' ', '-')}",
                "",
                "",
                record.amount_fen,
                record.time_ms,
                "suspense",
            )
        )
        return abs(record.amount_fen), 0
    if kind is CycleClosed:
        assert isinstance(record, CycleClosed)
        tally.closes.append((index, record))
        return 0, 0
    if kind is CycleSettled:
        assert isinstance(record, CycleSettled)
        tally.settles.append((index, record))
        return 0, 0
    if kind in UNCLASSIFIED_VIEWS:
        raise UnclassifiedRecord(
            f"journal record {index} is a {UNCLASSIFIED_VIEWS[kind]}, which settlement does "
            "not classify (settlement/ledger.py): it cannot tell whether it moves money"
        )
    raise AssertionError(f"record {index}: no settlement rule for {kind.__name__}")


def _iso_payment(index: int, payment: IsoPayment, tally: Tally) -> tuple[int, int]:
    legs = (payment.purse_fen, payment.medical_fen, payment.bank_fen, payment.payee_fen)
    if sum(legs) != 0:
        raise ConservationError(f"record {index}: ISO 8583 payment legs {legs} do not balance")
    moved = sum(leg for leg in legs if leg > 0)
    if not moved:
        return 0, 0
    if payment.payee_fen:
        role = PAYEE_ROLE_OF_ISO_KIND.get(payment.kind, Role.MERCHANT)
        counts = tally.iso_payees.get((payment.payee, role))
        if counts is None:
            counts = tally.iso_payees[(payment.payee, role)] = [0, 0, 0, 0]
        if payment.payee_fen > 0:
            counts[0] += 1
            counts[1] += payment.payee_fen
        else:
            counts[2] += 1
            counts[3] -= payment.payee_fen
    for leg, pair in (
        (payment.purse_fen, tally.iso_purse),
        (payment.medical_fen, tally.iso_medical),
    ):
        if leg < 0:
            pair[0] -= leg
        else:
            pair[1] += leg
    if payment.bank_fen:
        tally.bank_lines.append(
            BankLine(
                index,
                payment.bank_id,
                PAYMENT_ENTRY,
                f"{payment.bank_reference or payment.reference:012d}",
                payment.card,
                "",
                payment.bank_fen,
                payment.time_ms,
                payment.payee,
            )
        )
    return moved, payment.purse_fen


def _subsidy(index: int, record: SubsidyCredited, tally: Tally) -> int:
    total = 0
    for credit in record.credits:
        if credit.amount_fen <= 0:
            raise ConservationError(f"record {index}: subsidy credit of {credit.amount_fen}")
        total += credit.amount_fen
        tally.bank_lines.append(
            BankLine(
                index,
                credit.bank_id,
                SUBSIDY_ENTRY,
                f"{record.batch_id}/{credit.row:06d}",
                credit.card,
                credit.bank_account_masked,
                credit.amount_fen,
                record.time_ms,
                record.funder,
            )
        )
    funder = tally.funders.get(record.funder)
    if funder is None:
        funder = tally.funders[record.funder] = [0, 0]
    funder[0] += len(record.credits)
    funder[1] += total
    tally.batches.append(
        (record.batch_id, record.part, len(record.credits), total, len(record.rejections))
    )
    return total
