"""The engine alone, in-process: decisions per second and what the garbage collector costs.

    python -m bench.gcpause [--cards 200000] [--batches 8000]

Network benchmarks on a shared 2-core machine drift by tens of percent; this one has no
network, no fsync and no second process, so a change to the engine's memory behaviour
(docs/performance.md: untracked idempotency windows, frozen caches) shows up clearly. It
replays demo data into an Engine like the switch does at start, freezes it as
switch.core.open_switch does, then authorises batches of 32 gate taps and reports the
time in authorise() and in each generation of collections.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

from protocols.terminal import MacKey, ServerCodec, Tap, encode_request
from switch.config import EngineConfig
from switch.demo import DemoSpec, demo_records
from switch.engine import Engine
from switch.keystore import KeyStore

# A pipelined read carries a few dozen requests (bench: 32 in flight per connection).
BATCH = 32
FIRST_CARD = 8  # bench.mix.FIRST_ORDINARY_SERIAL
START_MS = 1_764_400_000_000
# Two milliseconds of switch time per batch: about 16,000 taps per second.
BATCH_MS = 2
GENERATIONS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gcpause", description=__doc__)
    parser.add_argument("--cards", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=8000)
    parser.add_argument("--no-freeze", action="store_true", help="skip gc.freeze()")
    args = parser.parse_args(argv)
    config = EngineConfig()
    keys = KeyStore()
    engine = Engine(config, keys.terminals)
    for record in demo_records(DemoSpec(cards=args.cards), keys, config):
        engine.apply(record)
    if not args.no_freeze:
        gc.freeze()
    pause_total = [0.0] * GENERATIONS
    pause_max = [0.0] * GENERATIONS
    count = [0] * GENERATIONS
    started = [0.0]

    def observe(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation = int(info["generation"])
        pause = time.perf_counter() - started[0]
        pause_total[generation] += pause
        pause_max[generation] = max(pause_max[generation], pause)
        count[generation] += 1

    gc.callbacks.append(observe)
    gates = sorted(t for t in keys.terminals if t.startswith("G"))
    signers = {t: MacKey(keys.terminals[t]) for t in gates}
    next_seq = dict.fromkeys(gates, 1)
    codec = ServerCodec()
    card = FIRST_CARD
    now_ms = START_MS
    in_authorise = 0.0
    for index in range(args.batches):
        terminal = gates[index % len(gates)]
        frames = []
        for _ in range(BATCH):
            tap = Tap(terminal, next_seq[terminal], now_ms, f"X{card:08d}")
            frames.append(encode_request(tap, signers[terminal]))
            next_seq[terminal] += 1
            card = FIRST_CARD + (card - FIRST_CARD + 1) % (args.cards - FIRST_CARD)
        now_ms += BATCH_MS
        codec.receive_data(b"".join(frames))
        decoded = codec.next_frames()
        began = time.perf_counter()
        engine.authorise(decoded, now_ms, [])
        in_authorise += time.perf_counter() - began
    gc.callbacks.remove(observe)
    decisions = args.batches * BATCH
    print(f"{decisions / in_authorise:,.0f} decisions/s inside authorise()")
    for generation in range(GENERATIONS):
        print(
            f"gen{generation} collections: {count[generation]}, "
            f"total {pause_total[generation] * 1e3:.0f} ms, "
            f"longest {pause_max[generation] * 1e3:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
