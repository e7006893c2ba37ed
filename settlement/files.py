"""Rendering a settled cycle into files, and reading fixed-width files back. Pure: the
bytes depend on the cycle's positions and nothing else (no clock, no host, no ordering of
dicts), so re-running a closed cycle produces byte-identical files.

    STLM-<bank>-<cycle>.txt   the settlement file for each partner bank (layout.py)
    payout-<payee>.csv        what each merchant, operator, hospital, biller is paid
    summary.json              every position, bank net and payout of the cycle
    reference.json            the terminal registry at the close (where the next cycle
                              starts from without reading the journal before it)
    manifest.txt              SHA-256 and size of each file above; its own SHA-256 is the
                              cycle's digest, journalled in CycleSettled
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from settlement.errors import FileFormatError
from settlement.layout import (
    DETAIL,
    FORMAT_VERSION,
    HEADER,
    LAYOUTS,
    LINE_WIDTH,
    NET,
    RETURN_KIND,
    SETTLEMENT_KIND,
    SUMMARY,
    TRAILER,
    Value,
    signed,
    unsigned,
)
from settlement.positions import CyclePositions, Payout, Position
from settlement.tally import BankLine

MANIFEST = "manifest.txt"
SUMMARY_FILE = "summary.json"
REFERENCE_FILE = "reference.json"
MANIFEST_TITLE = "onecard settlement manifest v1"
# A return file holds one line per booking; a bank's day is far below this, and a file
# above it is refused before it is matched (memory is bounded by it).
RETURN_LINES_MAX = 5_000_000


class CycleInfo(msgspec.Struct, frozen=True):
    cycle: int
    first_index: int
    last_index: int
    window_start_ms: int  # previous cutover (0 for the first cycle)
    window_end_ms: int  # this cycle's cutover
    closed_ms: int
    business_date: str  # YYYYMMDD

    @property
    def records(self) -> int:
        return self.last_index - self.first_index + 1


class Reference(msgspec.Struct, frozen=True):
    """The terminal registry as of the end of `last_index`."""

    last_index: int
    terminals: list[tuple[str, str, str]]  # (terminal, owner, kind), sorted


class Summary(msgspec.Struct, frozen=True):
    info: CycleInfo
    records: int
    financial: int
    movement_fen: int
    fee_fen: int
    positions: list[Position]
    bank_nets: list[tuple[str, int, int, int]]  # bank, debit, credit, net
    payouts: list[tuple[str, str, str, bool, int, int, int, int]]
    batches: list[tuple[str, int, int, int, int]]


@dataclass(frozen=True)
class CycleFiles:
    files: dict[str, bytes]  # name -> bytes, without the manifest
    manifest: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()


def settlement_file_name(bank: str, cycle: int) -> str:
    return f"STLM-{bank}-{cycle:06d}.txt"


def payout_file_name(payee: str) -> str:
    return f"payout-{payee}.csv"


def render_cycle(info: CycleInfo, result: CyclePositions) -> CycleFiles:
    files: dict[str, bytes] = {}
    for net in result.bank_nets:
        lines = [line for line in result.bank_lines if line.bank == net.bank]
        positions = [p for p in result.positions if p.bank == net.bank]
        files[settlement_file_name(net.bank, info.cycle)] = render_bank_file(
            info, net.bank, lines, positions, net.net_fen
        )
    for payout in result.payouts:
        files[payout_file_name(payout.payee)] = render_payout(info, payout)
    files[SUMMARY_FILE] = msgspec.json.encode(_summary(info, result)) + b"\n"
    reference = Reference(info.last_index, list(result.terminals_after))
    files[REFERENCE_FILE] = msgspec.json.encode(reference) + b"\n"
    manifest = [MANIFEST_TITLE, f"cycle {info.cycle:06d}"]
    manifest.extend(
        f"{hashlib.sha256(files[name]).hexdigest()}  {len(files[name])}  {name}"
        for name in sorted(files)
    )
    return CycleFiles(files, ("\n".join(manifest) + "\n").encode())


def _summary(info: CycleInfo, result: CyclePositions) -> Summary:
    return Summary(
        info=info,
        records=result.records,
        financial=result.financial,
        movement_fen=result.movement_fen,
        fee_fen=result.fee_fen,
        positions=result.positions,
        bank_nets=[(n.bank, n.debit_fen, n.credit_fen, n.net_fen) for n in result.bank_nets],
        payouts=[
            (
                p.payee,
                p.role,
                p.bank,
                p.withheld,
                p.gross_fen,
                p.reversed_fen,
                p.fee_fen,
                p.payout_fen,
            )
            for p in result.payouts
        ],
        batches=[
            (b.batch_id, b.part, b.credits, b.credit_fen, b.rejections) for b in result.batches
        ],
    )


def header_values(kind: str, bank: str, info: CycleInfo) -> dict[str, Value]:
    return {
        "kind": kind,
        "version": FORMAT_VERSION,
        "bank": bank,
        "cycle": info.cycle,
        "business_date": int(info.business_date),
        "window_start_ms": info.window_start_ms,
        "window_end_ms": info.window_end_ms,
        "first_index": info.first_index,
        "records": info.records,
        "created_ms": info.closed_ms,
    }


def detail_values(number: int, line: BankLine) -> dict[str, Value]:
    return {
        "line": number,
        "entry": line.entry,
        "reference": line.reference,
        "card": line.card,
        "account": line.account_masked,
        "direction": "C" if line.amount_fen > 0 else "D",
        "amount_fen": abs(line.amount_fen),
        "time_ms": line.time_ms,
        "counterparty": line.counterparty,
    }


def render_bank_file(
    info: CycleInfo,
    bank: str,
    lines: list[BankLine],
    positions: list[Position],
    net_fen: int,
    *,
    kind: str = SETTLEMENT_KIND,
) -> bytes:
    """A settlement file (kind STLM), or a return file (kind RETN: the bank's side, with
    no summary or net lines) as a bank would send it: tests and the bank simulator."""
    header = header_values(kind, bank, info)
    return _render(header, lines, positions, net_fen, kind)


def return_file_for(ours: bytes, lines: list[BankLine]) -> bytes:
    """The return file a bank that booked `lines` sends back for our settlement file
    `ours` (its header names the same cycle): the bank simulator's and tests' side."""
    header = dict(parse_bank_file(ours, "settlement file").header, kind=RETURN_KIND)
    return _render(header, lines, [], 0, RETURN_KIND)


def lines_of(data: bytes, source: str) -> list[BankLine]:
    """The detail lines of a settlement or return file, as BankLines (journal index 0)."""
    parsed = parse_bank_file(data, source)
    bank = str(parsed.header["bank"])
    out = []
    for _number, f in parsed.details:
        amount = _int(f["amount_fen"])
        out.append(
            BankLine(
                0,
                bank,
                str(f["entry"]),
                str(f["reference"]),
                str(f["card"]),
                str(f["account"]),
                amount if f["direction"] == "C" else -amount,
                _int(f["time_ms"]),
                str(f["counterparty"]),
            )
        )
    return out


def _render(
    header: Mapping[str, Value],
    lines: list[BankLine],
    positions: list[Position],
    net_fen: int,
    kind: str,
) -> bytes:
    bank = header["bank"]
    out = [HEADER.render(header)]
    debit = credit = 0
    for number, line in enumerate(lines, start=1):
        out.append(DETAIL.render(detail_values(number, line)))
        if line.amount_fen > 0:
            credit += line.amount_fen
        else:
            debit -= line.amount_fen
    if kind == SETTLEMENT_KIND:
        for number, position in enumerate(positions, start=1):
            out.append(
                SUMMARY.render(
                    {
                        "line": number,
                        "account": position.account,
                        "party": position.party,
                        "role": position.role,
                        "count": position.count,
                        "debit_fen": position.debit_fen,
                        "credit_fen": position.credit_fen,
                        **signed(position.net_fen),
                    }
                )
            )
        bank_debit = sum(-p.net_fen for p in positions if p.net_fen < 0)
        bank_credit = sum(p.net_fen for p in positions if p.net_fen > 0)
        out.append(
            NET.render(
                {
                    "bank": bank,
                    "debit_fen": bank_debit,
                    "credit_fen": bank_credit,
                    **signed(net_fen),
                }
            )
        )
    else:
        positions = []
        net_fen = credit - debit
    body = "".join(out).encode("ascii")
    trailer = TRAILER.render(
        {
            "detail_count": len(lines),
            "detail_debit_fen": debit,
            "detail_credit_fen": credit,
            "summary_count": len(positions),
            **signed(net_fen),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    )
    return body + trailer.encode("ascii")


def render_payout(info: CycleInfo, payout: Payout) -> bytes:
    """CSV, one record type per line in the first column (docs/settlement.md)."""
    status = "WITHHELD" if payout.withheld else "PAY"
    rows = [
        [
            "H",
            "PAYOUT",
            str(FORMAT_VERSION),
            payout.payee,
            payout.role,
            f"{info.cycle:06d}",
            info.business_date,
            payout.bank,
            payout.account,
            status,
        ],
    ]
    rows.extend(
        [
            "L",
            line.source,
            str(line.payments),
            str(line.payment_fen),
            str(line.reversals),
            str(line.reversal_fen),
            str(line.payment_fen - line.reversal_fen),
        ]
        for line in payout.lines
    )
    rows.append(
        [
            "T",
            str(sum(line.payments for line in payout.lines)),
            str(payout.gross_fen),
            str(sum(line.reversals for line in payout.lines)),
            str(payout.reversed_fen),
            str(payout.net_fen),
            str(payout.fee_rate_bp),
            str(payout.fee_fen),
            str(payout.payout_fen),
        ]
    )
    for row in rows:
        for cell in row:
            if "," in cell or "\n" in cell or not cell.isascii():
                raise FileFormatError(payout.payee, 0, f"value {cell!r} cannot go in the CSV")
    return "".join(",".join(row) + "\n" for row in rows).encode("ascii")


# -- reading fixed-width files back ---------------------------------------------------------


@dataclass(frozen=True)
class ParsedFile:
    header: dict[str, Value]
    details: list[tuple[int, dict[str, Value]]]  # (line number in the file, fields)
    summaries: list[dict[str, Value]]
    net_fen: int | None  # the N line's, STLM only
    trailer: dict[str, Value]


def parse_bank_file(data: bytes, source: str) -> ParsedFile:
    """Parse and check a settlement or return file: line widths, record order (H, D*, S*,
    N?, T), the trailer's control totals and checksum. FileFormatError names the line."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FileFormatError(source, 0, f"not ASCII at byte {exc.start}") from exc
    if not text.endswith("\n"):
        raise FileFormatError(source, 0, "does not end with a line feed (truncated?)")
    lines = text[:-1].split("\n")
    if len(lines) > RETURN_LINES_MAX:
        raise FileFormatError(source, 0, f"more than {RETURN_LINES_MAX} lines")
    order = "HDSNT"
    stage = 0
    header: dict[str, Value] | None = None
    trailer: dict[str, Value] | None = None
    details: list[tuple[int, dict[str, Value]]] = []
    summaries: list[dict[str, Value]] = []
    net_fen: int | None = None
    offset = 0
    for number, line in enumerate(lines, start=1):
        if len(line) != LINE_WIDTH:
            raise FileFormatError(source, number, f"{len(line)} characters, not {LINE_WIDTH}")
        code = line[0]
        layout = LAYOUTS.get(code)
        position = order.find(code)
        if trailer is not None:
            raise FileFormatError(source, number, "lines after the trailer")
        if layout is None or position < stage or (number == 1) != (code == "H"):
            raise FileFormatError(source, number, f"record {code!r} out of place")
        stage = position
        fields = layout.parse(line, source, number)
        if code == "H":
            header = fields
        elif code == "D":
            if fields["line"] != len(details) + 1:
                raise FileFormatError(source, number, f"detail line number {fields['line']}")
            details.append((number, fields))
        elif code == "S":
            summaries.append(fields)
        elif code == "N":
            if net_fen is not None:
                raise FileFormatError(source, number, "a second net line")
            net_fen = unsigned(fields, source, number)
        else:
            trailer = fields
            _check_trailer(data[:offset], fields, details, summaries, net_fen, source, number)
        offset += LINE_WIDTH + 1
    if header is None:
        raise FileFormatError(source, 1, "no header")
    if trailer is None:
        raise FileFormatError(source, len(lines), "no trailer (truncated?)")
    if header["version"] != FORMAT_VERSION:
        raise FileFormatError(
            source, 1, f"format version {header['version']}, not {FORMAT_VERSION}"
        )
    if header["kind"] not in (SETTLEMENT_KIND, RETURN_KIND):
        raise FileFormatError(source, 1, f"file kind {header['kind']!r}")
    return ParsedFile(header, details, summaries, net_fen, trailer)


def _check_trailer(
    body: bytes,
    trailer: dict[str, Value],
    details: list[tuple[int, dict[str, Value]]],
    summaries: list[dict[str, Value]],
    net_fen: int | None,
    source: str,
    number: int,
) -> None:
    if trailer["sha256"] != hashlib.sha256(body).hexdigest():
        raise FileFormatError(source, number, "checksum does not match the lines before it")
    debit = sum(_int(f["amount_fen"]) for _n, f in details if f["direction"] == "D")
    credit = sum(_int(f["amount_fen"]) for _n, f in details if f["direction"] == "C")
    for line, fields in details:
        if fields["direction"] not in ("C", "D"):
            raise FileFormatError(source, line, f"direction {fields['direction']!r}")
    expected_net = credit - debit if net_fen is None else net_fen
    totals = (len(details), debit, credit, len(summaries), expected_net)
    stated = (
        trailer["detail_count"],
        trailer["detail_debit_fen"],
        trailer["detail_credit_fen"],
        trailer["summary_count"],
        unsigned(trailer, source, number),
    )
    if totals != stated:
        raise FileFormatError(
            source, number, f"control totals {stated} do not match the file's lines {totals}"
        )


def _int(value: Value) -> int:
    assert isinstance(value, int)
    return value
