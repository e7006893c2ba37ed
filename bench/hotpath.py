"""The switch's CPU per request, in-process: every step of the hot path but the network.

    python -m bench.hotpath [--cards 100000] [--requests 200000] [--batch 32] [--profile]

`onecard bench` answers "how close to the baseline"; this answers "where do the
microseconds go" with far less noise, because nothing else runs: no second process, no
event loop, no fsync (the journal's sync is replaced by nothing; the write() is kept). It
opens a fresh demo data directory like `onecard run`, then feeds the bench's own traffic
mix (bench/mix.py: gates and POS, declines and retries) through exactly what the asyncio
adapter calls per read: `ServerCodec` -> `Switch.process` (MAC, engine, journal encode,
answer encode and sign) -> the journal's group write. It prints microseconds per request
for each stage (wall clock) and the CPU of the whole, each the best of `--rounds` rounds,
and with `--profile` a cProfile of one round.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.mix import Mix, Role, TerminalScript
from protocols.terminal import MacKey, ServerCodec
from switch.config import Config
from switch.core import Switch, open_switch
from switch.demo import DemoSpec, create_demo
from switch.keystore import KeyStore

START_MS = 1_796_004_000_000
# A pipelined read carries a few dozen requests (bench: 32 in flight per connection).
BATCH = 32
# Each batch moves the switch's clock on: 2 ms per 32 requests is 16,000 requests/s.
BATCH_MS = 2
STAGES = ("decode", "process", "journal write")


def _no_sync(_fd: int) -> None:
    """The fsync is the disk's cost, not the CPU's: left out so the figures are steady."""


class _Traffic:
    """The bench mix's terminals, planning reads of `batch` requests round-robin. Seqs and
    times run on across rounds: a replayed round would be answered from the idempotency
    window and measure nothing."""

    def __init__(self, data_dir: Path, cards: int, batch: int) -> None:
        keys = KeyStore.load(data_dir)
        terminals = sorted(t for t in keys.terminals if t[0] in "GP")
        rng = random.Random(7)
        self._scripts = [
            TerminalScript(
                terminal,
                Role.GATE if terminal.startswith("G") else Role.POS,
                MacKey(keys.terminals[terminal]),
                first_seq=1,
                cards=cards,
                mix=Mix(),
                rng=rng,
                card_start=index,
                card_stride=len(terminals),
            )
            for index, terminal in enumerate(terminals)
        ]
        self._batch = batch
        self._next = 0
        self.now_ms = START_MS

    def reads(self, requests: int) -> list[bytes]:
        reads = []
        for _ in range(requests // self._batch):
            script = self._scripts[self._next % len(self._scripts)]
            self._next += 1
            self.now_ms += BATCH_MS
            now_ms = self.now_ms
            reads.append(b"".join(script.next_request(now_ms).frame for _ in range(self._batch)))
        return reads


def _round(switch: Switch, reads: list[bytes], start_ms: int) -> dict[str, float]:
    """Seconds per stage (wall clock: perf_counter is a vDSO call, where process_time is a
    system call costing microseconds that would swamp batches of one), and the round's CPU
    seconds under "cpu"."""
    stages = dict.fromkeys(STAGES, 0.0)
    codec = ServerCodec()
    clock = [start_ms]
    switch.clock = lambda: clock[0]
    now = time.perf_counter
    cpu_started = time.process_time()
    for read in reads:
        clock[0] += BATCH_MS
        began = now()
        codec.receive_data(read)
        frames = codec.next_frames()
        decoded = now()
        switch.process(frames)
        decided = now()
        switch.journal.write_now()
        written = now()
        stages["decode"] += decoded - began
        stages["process"] += decided - decoded
        stages["journal write"] += written - decided
    stages["cpu"] = time.process_time() - cpu_started
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100_000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onecard-hotpath-") as tmp:
        data_dir = Path(tmp)
        config = Config()
        create_demo(data_dir, DemoSpec(cards=args.cards, gates=48, pos=16), config.engine)
        switch = open_switch(data_dir, config)
        switch.journal._sync = _no_sync  # this bench's own journal: no fsync
        traffic = _Traffic(data_dir, args.cards, args.batch)
        best: dict[str, float] = {}
        for round_index in range(args.rounds):
            start_ms = traffic.now_ms
            reads = traffic.reads(args.requests)
            gc.collect()
            stages = _round(switch, reads, start_ms)
            for name, seconds in stages.items():
                best[name] = min(best.get(name, seconds), seconds)
            print(f"round {round_index + 1}: {stages['cpu'] / args.requests * 1e6:.1f} µs/request")
        per_request = 1e6 / args.requests
        print(f"best of {args.rounds} rounds, µs per request (batches of {args.batch}):")
        for name in STAGES:
            print(f"  {name:14} {best[name] * per_request:6.2f}")
        print(f"  {'CPU, all':14} {best['cpu'] * per_request:6.2f}")
        if args.profile:
            start_ms = traffic.now_ms
            reads = traffic.reads(args.requests)
            _profile(lambda: _round(switch, reads, start_ms))
        switch.journal.close()
    return 0


def _profile(run: Callable[[], object]) -> None:
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    sys.exit(main())
