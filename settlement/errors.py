"""The error tree of the settlement package.

    SettlementError (a switch.errors.SwitchError: the CLI reports it like any other)
    ├── SettlementStateError   a settlement record contradicts the state it is applied to
    │                          (also a StateError: replay treats it like any other)
    ├── CycleError             a cycle cannot be settled as asked
    │   ├── CycleNotClosed     the cycle is still open (or its close is not durable yet)
    │   └── NotDeterministic   a re-run produced other bytes than the first run: the
    │                          journal or the code changed under a settled cycle
    ├── JournalUnreadable      the cycle's records cannot be read back whole and chained
    ├── UnclassifiedRecord     a journal record type settlement does not know: it cannot
    │                          tell whether it moves money, so it refuses to guess
    ├── ConservationError      positions do not add up to the journal's money movements
    ├── FileFormatError        a file we were given (bank return file, finance-bureau
    │                          batch) breaks its documented format; names the line
    ├── BatchRefused           a subsidy batch as a whole cannot be taken (its id was used
    │                          for other content, an unknown funder)
    ├── ResolutionRefused      a reconciliation resolution names no open exception
    └── SettlementStoreError   the settlement store (PostgreSQL) failed or disagrees

Lower-layer errors (OSError, asyncpg's, msgspec's) are mapped at the boundary where they
occur (`raise ... from exc`), so callers handle one tree.
"""

from __future__ import annotations

from switch.errors import StateError, SwitchError


class SettlementError(SwitchError):
    pass


class SettlementStateError(SettlementError, StateError):
    pass


class CycleError(SettlementError):
    pass


class CycleNotClosed(CycleError):
    pass


class NotDeterministic(CycleError):
    pass


class JournalUnreadable(SettlementError):
    pass


class UnclassifiedRecord(SettlementError):
    pass


class ConservationError(SettlementError):
    pass


class FileFormatError(SettlementError):
    """`line` is 1-based; 0 when the problem is the file as a whole."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = f"{source} line {line}" if line else source
        super().__init__(f"{where}: {problem}")


class BatchRefused(SettlementError):
    pass


class ResolutionRefused(SettlementError):
    pass


class SettlementStoreError(SettlementError):
    pass
