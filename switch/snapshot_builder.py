"""Building a snapshot in a process of its own, so that the switch never stops for one.

    python -m switch.snapshot_builder DATA_DIR POSITION   (the engine configuration,
                                                            JSON, on stdin)

The switch (snapshotter.py) starts one when enough has been journalled since the last
snapshot, with POSITION a durable position of its journal. The builder makes the caches
exactly as a restart would (core.replay: the newest usable snapshot, then the journal
after it, checksums and hash chain checked) up to POSITION and no further, and writes them
as the snapshot at POSITION. It writes nothing but that file (and removes the oldest
snapshot beyond snapshot.KEEP); the journal is only read.

It used to be a fork of the switch. A fork stops the event loop while the kernel copies
the page tables (17-32 ms with a million cards), and for as long as the child lives every
page the switch touches is copied on its first write: at 20,000 requests/s the p99 was
26 ms with snapshots against 9.5 ms without (docs/performance.md, Eighth round). A builder
costs a replay from the last snapshot on the other core instead, at the lowest priority
(switch/background.py), and the switch nothing but starting it. Forking a process with
threads (the journal writer, anyio's workers) was a hazard of its own besides.

It exits 0 having printed the snapshot's file name, or 1 having said why on stderr. It
ignores SIGINT, which a Ctrl-C in the switch's terminal sends to the whole process group:
the switch kills it when it stops.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from pathlib import Path

import msgspec

from switch import snapshot
from switch.background import lowest_priority
from switch.config import EngineConfig
from switch.core import replay
from switch.errors import SwitchError
from switch.keystore import KeyStore


def build(data_dir: Path, config: EngineConfig, position: int) -> Path:
    """Write the snapshot of the caches as the journal's first `position` records leave
    them; returns its path. `position` must be durable and end a write group."""
    keys = KeyStore.load(data_dir)
    # The replay builds long-lived caches and frees next to nothing, and the process ends
    # after the write: the cyclic collector would only walk the growing heap (core.py).
    gc.disable()
    engine, report, _ = replay(data_dir, config, keys, end=position)
    return snapshot.write(
        data_dir / snapshot.DIRECTORY, engine, position, report.last_chain, keys.journal
    )


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lowest_priority()
    parser = argparse.ArgumentParser(prog="python -m switch.snapshot_builder")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("position", type=int)
    args = parser.parse_args(argv)
    try:
        config = msgspec.json.decode(sys.stdin.buffer.read(), type=EngineConfig)
        path = build(args.data_dir, config, args.position)
    except (SwitchError, OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(f"snapshot builder: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
