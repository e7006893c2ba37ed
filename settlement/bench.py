"""The settlement benchmark: generate a journal holding one cycle of N payments, settle it,
report the time (docs/performance.md, "Settlement").

    .venv/bin/python -m settlement.bench --records 10000000 --directory /tmp/settle-bench

The journal is written in the real segment format (settlement/synthetic.py), keyed and
chained, with a realistic mix of taps, purchases, reversals, offline taps and declines; the
settlement that reads it is the production code path (settlement.cycle.settle_cycle), with
its conservation checks. Generating takes longer than settling (every record is encoded
and chained in one Python thread); --reuse settles an existing generated journal again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from settlement.config import PayeeAccount, SettlementConfig
from settlement.cycle import settle_cycle
from settlement.records import CycleClosed
from settlement.synthetic import SegmentWriter, registrations, synthetic_payments
from switch.journal.segment import SEGMENT_BYTES_MAX
from switch.keystore import KeyStore

# Monday 2026-11-30 00:00 in Shiyan: the synthetic day starts here.
DAY_START_MS = 1_795_968_000_000
# A city's fleet: two thousand gates and validators, five hundred merchants (each gets a
# payout report), a million cards.
GATES = 2_000
MERCHANTS = 500
CARDS = 1_000_000
META = "bench.json"


@dataclass(frozen=True)
class BenchResult:
    records: int
    generate_seconds: float
    settle_seconds: float
    # CPU time of the settling process and its workers: on a loaded machine the wall time
    # says more about the neighbours than about settlement; cpu / workers is the idle wall.
    settle_cpu_seconds: float
    records_per_second: float
    workers: int
    segments: int
    journal_bytes: int
    movement_fen: int
    digest: str


def generate(
    directory: Path,
    records: int,
    *,
    merchants: int = MERCHANTS,
    segment_bytes_max: int = SEGMENT_BYTES_MAX,
) -> float:
    """A data directory holding one closed cycle of `records` payments; returns seconds."""
    gates = [f"G{number:04d}" for number in range(1, GATES + 1)]
    pos = [f"P{number:04d}" for number in range(1, merchants + 1)]
    started = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    keys = KeyStore()
    keys.save(directory)
    writer = SegmentWriter(directory / "journal", keys.journal, segment_bytes_max=segment_bytes_max)
    writer.append(registrations(gates, pos))
    writer.append(
        synthetic_payments(records, first_ms=DAY_START_MS, gates=gates, pos=pos, cards=CARDS)
    )
    last_index = writer.next_index - 1
    cutover_ms = DAY_START_MS + 23 * 3_600_000
    close = CycleClosed(cutover_ms, 1, last_index, cutover_ms)
    writer.append([close])
    writer.close()
    (directory / META).write_text(json.dumps({"records": records, "last_index": last_index}))
    return time.perf_counter() - started


def bench_config(workers: int) -> SettlementConfig:
    return SettlementConfig(
        payees=[PayeeAccount("shiyan-bus", "ABC", "6228480402564890018")],
        workers=workers,
        # The benchmark measures the path it asks for: worker processes unless workers=1.
        parallel_records_min=2**62 if workers == 1 else 1,
    )


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def settle(directory: Path, workers: int) -> tuple[float, float, int, str]:
    """Settle the generated cycle; returns (seconds, CPU seconds, money moved, digest)."""
    meta = json.loads((directory / META).read_text())
    keys = KeyStore.load(directory)
    close = CycleClosed(0, 1, meta["last_index"], DAY_START_MS + 23 * 3_600_000)
    cycle_dir = directory / "settlement"
    if cycle_dir.exists():
        shutil.rmtree(cycle_dir)  # a fresh run, not a re-run check
    started, cpu = time.perf_counter(), _cpu_seconds()
    settled = settle_cycle(directory, bench_config(workers), keys.journal, close, None)
    return (
        time.perf_counter() - started,
        _cpu_seconds() - cpu,
        settled.positions.movement_fen,
        settled.digest,
    )


def run(
    directory: Path, records: int, workers: int, reuse: bool, merchants: int = MERCHANTS
) -> BenchResult:
    generate_seconds = 0.0
    if not (reuse and (directory / META).exists()):
        generate_seconds = generate(directory, records, merchants=merchants)
    records = json.loads((directory / META).read_text())["records"]
    seconds, cpu_seconds, movement, digest = settle(directory, workers)
    segments = list((directory / "journal").glob("*.journal"))
    return BenchResult(
        records=records,
        generate_seconds=round(generate_seconds, 1),
        settle_seconds=round(seconds, 2),
        settle_cpu_seconds=round(cpu_seconds, 2),
        records_per_second=round(records / seconds),
        workers=workers or os.cpu_count() or 1,
        segments=len(segments),
        journal_bytes=sum(path.stat().st_size for path in segments),
        movement_fen=movement,
        digest=digest,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="settlement.bench", description=__doc__)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--directory", type=Path, default=Path("/tmp/onecard-settle-bench"))
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--reuse", action="store_true", help="settle an existing journal again")
    parser.add_argument("--merchants", type=int, default=MERCHANTS, help="payees with a report")
    args = parser.parse_args(argv)
    result = run(args.directory, args.records, args.workers, args.reuse, args.merchants)
    json.dump(asdict(result), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
