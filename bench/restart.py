"""Restart time with and without a snapshot, on a journal of N decisions.

    python -m bench.restart --records 10000000 [--dir /tmp/onecard-restart]

Writes demo data and then N purchase decisions straight through the journal writer (one
record per purchase, balances consistent, in groups like the live switch writes), takes a
snapshot at record N - tail (as the running switch would have, `--tail` records before
the end: 500,000 by default, the snapshot interval), and times `open_switch` — the moment
the switch is ready to serve — twice: from the snapshot plus the tail, and from the whole
journal. The issue's target: 10 million records, ready in ≤ 10 s.
"""

from __future__ import annotations

import argparse
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


def timed_start(data_dir: Path) -> float:
    started = time.perf_counter()
    switch = open_switch(data_dir, Config())
    elapsed = time.perf_counter() - started
    switch.journal.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--tail", type=int, default=500_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onecard-restart"))
    args = parser.parse_args(argv)
    if args.dir.exists():
        shutil.rmtree(args.dir)
    print(f"writing {args.records:,} decisions over {CARDS:,} cards ...", flush=True)
    generate(args.dir, args.records, max(args.records - args.tail, GROUP_RECORDS))
    with_snapshot = timed_start(args.dir)
    for path in snapshot.candidates(args.dir / snapshot.DIRECTORY):
        path.unlink()
    without = timed_start(args.dir)
    print(
        f"records {args.records:,}: ready in {with_snapshot:.2f} s from a snapshot + "
        f"{args.tail:,} records; {without:.2f} s replaying everything"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
