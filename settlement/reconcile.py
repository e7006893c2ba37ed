"""Reconciliation: a bank's return file against the settlement file we sent it.

The bank returns, for a cycle, every entry it booked on holders' accounts (RETN file, the
settlement file's layout without summary and net lines). Entries are matched by (entry
type, reference), line by line, and every difference is an exception of one class:

    missing_ours      the bank booked an entry our file does not hold
    missing_theirs    our file holds an entry the bank did not book
    amount_mismatch   both hold it, for different amounts or directions
    duplicate         one side holds the same entry more than once

Exceptions are resolved by people, and every resolution is journalled
(ReconciliationResolved): `adjust` moves the difference between the bank and the card
service's suspense account in the open cycle (it appears in the bank's next settlement file
as an ADJS line); `bank_to_correct` and `accepted` move nothing. Matching is pure (files
in, result out); resolving checks the result and the journal's resolved set.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable

import msgspec

from settlement.errors import FileFormatError, ResolutionRefused
from settlement.files import ParsedFile, parse_bank_file
from settlement.layout import RETURN_KIND, SETTLEMENT_KIND, Value
from settlement.records import ReconciliationResolved
from settlement.state import SettlementState


class Discrepancy(enum.StrEnum):
    MISSING_OURS = "missing_ours"
    MISSING_THEIRS = "missing_theirs"
    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE = "duplicate"


class Action(enum.StrEnum):
    ADJUST = "adjust"  # post the difference (amount_fen) between the bank and suspense
    BANK_TO_CORRECT = "bank_to_correct"  # the bank corrects its booking; nothing moves here
    ACCEPTED = "accepted"  # explained, nothing to move (e.g. a duplicate line, not booking)


class ReconException(msgspec.Struct, frozen=True):
    """One exception. Amounts are signed as on the bank's position: + credits the
    holder's account (the card service owes the bank), - debits it."""

    discrepancy: str
    entry: str  # "PAYM 000000001234": entry type and reference
    card: str
    ours_fen: int  # sum of our lines (0 when we have none)
    theirs_fen: int
    ours_lines: list[int]  # line numbers in our file
    theirs_lines: list[int]  # line numbers in theirs

    @property
    def difference_fen(self) -> int:
        """What adjusting to the bank's booking moves to the bank."""
        return self.theirs_fen - self.ours_fen


class ReconciliationResult(msgspec.Struct, frozen=True):
    cycle: int
    bank: str
    ours_sha256: str
    theirs_sha256: str
    matched: int
    matched_fen: int  # sum of the absolute amounts matched
    exceptions: list[ReconException]

    def counts(self) -> dict[str, int]:
        out = {kind.value: 0 for kind in Discrepancy}
        for exception in self.exceptions:
            out[exception.discrepancy] += 1
        return out

    def exception(self, entry: str) -> ReconException | None:
        for exception in self.exceptions:
            if exception.entry == entry:
                return exception
        return None


_Line = tuple[int, int, str]  # (line number, signed amount, card)


def _entries(parsed: ParsedFile) -> dict[str, list[_Line]]:
    out: dict[str, list[_Line]] = {}
    for number, fields in parsed.details:
        amount = _int(fields["amount_fen"])
        signed = amount if fields["direction"] == "C" else -amount
        key = f"{fields['entry']} {fields['reference']}"
        out.setdefault(key, []).append((number, signed, str(fields["card"])))
    return out


def _int(value: Value) -> int:
    assert isinstance(value, int)
    return value


def reconcile(ours: bytes, theirs: bytes, source: str) -> ReconciliationResult:
    """Match the bank's return file `theirs` against our settlement file `ours`."""
    our_file = parse_bank_file(ours, "our settlement file")
    their_file = parse_bank_file(theirs, source)
    if our_file.header["kind"] != SETTLEMENT_KIND:
        raise FileFormatError("our settlement file", 1, "is not a settlement (STLM) file")
    if their_file.header["kind"] != RETURN_KIND:
        raise FileFormatError(source, 1, f"kind {their_file.header['kind']}, not {RETURN_KIND}")
    for name in ("bank", "cycle", "first_index", "records"):
        if their_file.header[name] != our_file.header[name]:
            raise FileFormatError(
                source,
                1,
                f"{name} {their_file.header[name]!r} is not the settlement file's "
                f"{our_file.header[name]!r}: a return file for another cycle or bank",
            )
    our_entries = _entries(our_file)
    their_entries = _entries(their_file)
    matched = matched_fen = 0
    exceptions = []
    for key in sorted(our_entries.keys() | their_entries.keys()):
        mine = our_entries.get(key, [])
        theirs_ = their_entries.get(key, [])
        ours_fen = sum(line[1] for line in mine)
        theirs_fen = sum(line[1] for line in theirs_)
        if len(mine) > 1 or len(theirs_) > 1:
            kind = Discrepancy.DUPLICATE
        elif not mine:
            kind = Discrepancy.MISSING_OURS
        elif not theirs_:
            kind = Discrepancy.MISSING_THEIRS
        elif ours_fen != theirs_fen:
            kind = Discrepancy.AMOUNT_MISMATCH
        else:
            matched += 1
            matched_fen += abs(ours_fen)
            continue
        card = (mine or theirs_)[0][2]
        exceptions.append(
            ReconException(
                kind,
                key,
                card,
                ours_fen,
                theirs_fen,
                [line[0] for line in mine],
                [line[0] for line in theirs_],
            )
        )
    return ReconciliationResult(
        cycle=_int(our_file.header["cycle"]),
        bank=str(our_file.header["bank"]),
        ours_sha256=hashlib.sha256(ours).hexdigest(),
        theirs_sha256=hashlib.sha256(theirs).hexdigest(),
        matched=matched,
        matched_fen=matched_fen,
        exceptions=exceptions,
    )


def render_report(
    result: ReconciliationResult, resolved: Iterable[tuple[int, str, str]] = ()
) -> bytes:
    """The exception report (CSV): a header, one line per exception with whether it is
    resolved, and the counts by class."""
    done = {
        entry for cycle, bank, entry in resolved if (cycle, bank) == (result.cycle, result.bank)
    }
    lines = [
        f"H,RECON,1,{result.bank},{result.cycle:06d},{result.ours_sha256},{result.theirs_sha256}",
        "#E,discrepancy,entry,card,ours_fen,theirs_fen,difference_fen,ours_lines,theirs_lines,status",
    ]
    lines.extend(
        ",".join(
            [
                "E",
                e.discrepancy,
                e.entry,
                e.card,
                str(e.ours_fen),
                str(e.theirs_fen),
                str(e.difference_fen),
                " ".join(map(str, e.ours_lines)),
                " ".join(map(str, e.theirs_lines)),
                "resolved" if e.entry in done else "open",
            ]
        )
        for e in result.exceptions
    )
    counts = result.counts()
    lines.append(
        "T,"
        + ",".join(
            [str(result.matched), str(result.matched_fen), str(len(result.exceptions))]
            + [f"{kind}={counts[kind]}" for kind in Discrepancy]
        )
    )
    return ("\n".join(lines) + "\n").encode("ascii")


def resolution_record(
    result: ReconciliationResult,
    state: SettlementState,
    entry: str,
    action: Action,
    amount_fen: int,
    actor: str,
    note: str,
    now_ms: int,
) -> ReconciliationResolved:
    """The record resolving one open exception; ResolutionRefused when it names none, is
    resolved already, or the amount does not fit the action."""
    exception = result.exception(entry)
    if exception is None:
        raise ResolutionRefused(f"cycle {result.cycle} bank {result.bank}: no exception {entry!r}")
    if (result.cycle, result.bank, entry) in state.resolved:
        raise ResolutionRefused(f"{entry} of cycle {result.cycle} is resolved already")
    if not actor:
        raise ResolutionRefused("a resolution names who made it")
    difference = exception.difference_fen
    if action is Action.ADJUST:
        # An adjustment moves part or all of the difference, in its direction, never more.
        if not amount_fen or amount_fen * difference < 0 or abs(amount_fen) > abs(difference):
            raise ResolutionRefused(
                f"an adjustment of {entry} must be 1..{abs(difference)} fen in the direction "
                f"of the difference ({difference:+d})"
            )
    elif amount_fen:
        raise ResolutionRefused(f"{action} moves no money: amount must be 0")
    return ReconciliationResolved(
        now_ms,
        result.cycle,
        result.bank,
        entry,
        exception.discrepancy,
        action,
        amount_fen,
        actor,
        note,
    )
