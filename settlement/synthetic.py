"""Synthetic journals for the settlement benchmark and tests: the real segment format
(switch/journal/segment.py) written straight to files, with no writer thread and no fsync.

Never for a live data directory: the switch's own writer (switch/journal/writer.py) is the
only one that may append there.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from pathlib import Path

from switch.journal.records import Decision, OfflineTapApplied, Record, TerminalRegistered
from switch.journal.segment import (
    GENESIS_CHAIN,
    HEADER,
    SEGMENT_BYTES_MAX,
    encode_records,
    mark_group_end,
    segment_header,
    segment_name,
)
from switch.transit.rides import TransitState

# Records encoded per write: large enough that the per-call cost vanishes, small enough
# that a segment overshoots its size limit by little.
ENCODE_BATCH = 10_000


class SegmentWriter:
    """Appends records to a journal directory in the journal's own format."""

    def __init__(
        self,
        directory: Path,
        chain_key: bytes,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX,
        next_index: int = 0,
        chain: bytes = GENESIS_CHAIN,
        records_per_write: int = ENCODE_BATCH,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.chain_key = chain_key
        self.segment_bytes_max = segment_bytes_max
        self.next_index = next_index
        self.chain = chain
        self.records_per_write = records_per_write
        self._fd: int | None = None
        self._size = 0

    def append(self, records: Iterable[Record]) -> int:
        """Write the records; returns the index the next record gets."""
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) >= self.records_per_write:
                self._write(batch)
                batch = []
        if batch:
            self._write(batch)
        return self.next_index

    def _write(self, records: list[Record]) -> None:
        data, count, chain, last = encode_records(
            records, self.next_index, self.chain, self.chain_key
        )
        data = mark_group_end(data, last)  # each write is one group, as the writer's are
        if self._fd is None or (
            self._size + len(data) > self.segment_bytes_max and self._size > HEADER.size
        ):
            self.close()
            path = self.directory / segment_name(self.next_index)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            os.write(self._fd, segment_header(self.next_index, self.chain))
            self._size = HEADER.size
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)
        self.next_index += count
        self.chain = chain

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- a day of transit and merchant payments, for the benchmark -------------------------------

# Shares of the synthetic mix, per 1,000 records: mostly bus and metro taps, as in a city's
# day; purchases at merchants; reversals; offline uploads; declines that move nothing.
MIX_PER_MILLE = {"tap": 700, "purchase": 150, "reversal": 20, "offline": 50, "declined": 80}


def synthetic_payments(
    count: int,
    *,
    first_ms: int,
    gates: list[str],
    pos: list[str],
    cards: int,
    seed: int = 8,
) -> Iterable[Record]:
    """`count` Decision and OfflineTapApplied records in a realistic mix. Balances are not
    tracked (settlement does not read them); the money fields are consistent record by
    record, which is what settlement reads."""
    rng = random.Random(seed)
    choices: list[str] = []
    for kind, share in MIX_PER_MILLE.items():
        choices.extend([kind] * share)
    state = TransitState("B1", "", 0, "B1", first_ms, first_ms, first_ms, 0, 202611, 0)
    make: dict[str, Callable[[int, str, int], Record]] = {}

    def tap(time_ms: int, card: str, reference: int) -> Record:
        gate = gates[reference % len(gates)]
        return Decision(
            time_ms,
            time_ms,
            gate,
            reference,
            "tap",
            card,
            0,
            0,
            "00",
            -200,
            1800,
            reference,
            "",
            state,
        )

    def purchase(time_ms: int, card: str, reference: int) -> Record:
        terminal = pos[reference % len(pos)]
        amount = 100 + reference % 5000
        return Decision(
            time_ms,
            time_ms,
            terminal,
            reference,
            "purchase",
            card,
            amount,
            0,
            "00",
            -amount,
            20_000 - amount,
            reference,
        )

    def reversal(time_ms: int, card: str, reference: int) -> Record:
        terminal = pos[reference % len(pos)]
        amount = 100 + reference % 5000
        return Decision(
            time_ms,
            time_ms,
            terminal,
            reference,
            "reversal",
            card,
            0,
            reference - 1,
            "00",
            amount,
            20_000,
            reference,
        )

    def offline(time_ms: int, card: str, reference: int) -> Record:
        gate = gates[reference % len(gates)]
        paid = 200 if reference % 10 else 100  # one in ten leaves a debt
        return OfflineTapApplied(
            time_ms,
            gate,
            reference,
            time_ms - 3_600_000,
            card,
            "",
            False,
            "00",
            200,
            paid,
            0,
            200 - paid,
            state,
        )

    def declined(time_ms: int, card: str, reference: int) -> Record:
        gate = gates[reference % len(gates)]
        return Decision(
            time_ms, time_ms, gate, reference, "tap", card, 0, 0, "51", 0, 100, reference
        )

    make.update(tap=tap, purchase=purchase, reversal=reversal, offline=offline, declined=declined)
    for number in range(count):
        card = f"X{rng.randrange(1, cards + 1):08d}"
        yield make[rng.choice(choices)](first_ms + number * 8, card, number + 1)


def registrations(gates: list[str], pos: list[str]) -> list[TerminalRegistered]:
    out = [TerminalRegistered(g, "gate", "shiyan-bus", "0" * 8, "B1") for g in gates]
    out.extend(TerminalRegistered(p, "pos", f"merchant-{p[1:]}", "0" * 8) for p in pos)
    return out
