"""Restart time with and without a snapshot, on a journal of N decisions.

    python -m bench.restart --records 10000000 [--dir /tmp/onecard-restart] [--reuse] [--full]

Writes demo data and then N purchase decisions straight through the journal writer (one
record per purchase, balances consistent, in groups like the live switch writes), takes a
snapshot at record N - tail (as the running switch would have, `--tail` records before
the end: 500,000 by default, the snapshot interval), and times `open_switch` — the moment
the switch is ready to serve — from the snapshot plus the tail, in wall and CPU seconds
(the bench machine is shared: CPU seconds are what the restart itself cost). `--full` also
times a replay of the whole journal (the snapshots are moved aside for it and put back);
`--reuse` times the data directory an earlier run left instead of writing a new one
(writing 10 million records takes several minutes). The issue's target: 10 million
records, ready in ≤ 10 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from switch import snapshot
from switch.config import Config, EngineConfig
from switch.core import open_switch
from switch.demo import DemoSpec, create_demo
from switch.engine import Engine
from switch.journal import Journal, recover
from switch.journal.records import Decision, Record
from switch.keystore import KeyStore

CARDS = 100_000
GROUP_RECORDS = 2_000  # what a busy switch writes per fsync
T0_MS = 1_796_004_000_000


def _applier(engine: Engine) -> Callable[[int, Record], None]:
    return lambda _index, record: engine.apply(record)


def generate(data_dir: Path, records: int, snapshot_at: int) -> None:
    create_demo(data_dir, DemoSpec(cards=CARDS, gates=16, pos=64), EngineConfig())
    keys = KeyStore.load(data_dir)
    journal_dir = data_dir / "journal"
    engine = Engine(EngineConfig(), keys.terminals)
    report = recover(journal_dir, lambda _i, record: engine.apply(record), keys.journal)
    journal = Journal(journal_dir, report)
    purse = {number: card.purse_fen for number, card in engine.cards.items()}
    active = [n for n, c in engine.cards.items() if c.status == "active" and c.purse_fen > 0]
    terminals = [f"P{n:04d}" for n in range(1, 65)]
    seqs = dict.fromkeys(terminals, 0)
    reference = engine.next_reference
    written = 0
    started = time.perf_counter()
    while written < records:
        batch: list[Record] = []
        for _ in range(min(GROUP_RECORDS, records - written)):
            terminal = terminals[written % len(terminals)]
            seqs[terminal] += 1
            card = active[written % len(active)]
            amount = 1 if purse[card] > 0 else 0
            purse[card] -= amount
            batch.append(
                Decision(
                    T0_MS + written,
                    T0_MS + written,
                    terminal,
                    seqs[terminal],
                    "purchase",
                    card,
                    1,
                    0,
                    "00" if amount else "51",
                    -amount,
                    purse[card],
                    reference,
                )
            )
            reference += 1
            written += 1
        journal.append(batch)
        journal.write_now()
        if written == snapshot_at:
            engine_now = Engine(EngineConfig(), keys.terminals)
            recovered = recover(journal_dir, _applier(engine_now), keys.journal)
            snapshot.write(
                data_dir / snapshot.DIRECTORY,
                engine_now,
                recovered.next_index,
                recovered.last_chain,
                keys.journal,
            )
        if written % 1_000_000 == 0:
            rate = written / (time.perf_counter() - started)
            print(f"  {written:,} records written ({rate:,.0f}/s)", flush=True)
    journal.close()


def timed_start(data_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds until `open_switch` returns a switch ready to serve."""
    started, cpu_started = time.perf_counter(), time.process_time()
    switch = open_switch(data_dir, Config())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    switch.journal.close()
    return elapsed, cpu


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--tail", type=int, default=500_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onecard-restart"))
    parser.add_argument("--reuse", action="store_true", help="time the data an earlier run left")
    parser.add_argument("--full", action="store_true", help="also time a replay of everything")
    args = parser.parse_args(argv)
    if not args.reuse:
        if args.dir.exists():
            shutil.rmtree(args.dir)
        print(f"writing {args.records:,} decisions over {CARDS:,} cards ...", flush=True)
        generate(args.dir, args.records, max(args.records - args.tail, GROUP_RECORDS))
    # One start per process: a second one here would find the first's frozen caches in
    # the heap (open_switch calls gc.freeze) and measure that too.
    before = _load()
    wall, cpu = timed_start(args.dir)
    print(
        f"records {args.records:,}: ready in {wall:.2f} s wall, {cpu:.2f} s CPU from a "
        f"snapshot + {args.tail:,} records ({before} before)",
        flush=True,
    )
    if args.full:
        snapshots = args.dir / snapshot.DIRECTORY
        aside = snapshots.with_name(snapshot.DIRECTORY + ".aside")
        snapshots.rename(aside)
        try:
            before = _load()
            wall, cpu = timed_start(args.dir)
        finally:
            aside.rename(snapshots)
        print(f"replaying everything: {wall:.2f} s wall, {cpu:.2f} s CPU ({before} before)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
