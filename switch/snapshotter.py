"""Taking snapshots while the switch serves (switch/snapshot.py says what one is).

When enough has been journalled since the last snapshot, a builder process
(snapshot_builder.py) replays the caches up to the journal's durable position from the last
snapshot and writes the next one; the switch only starts it and waits for it in the
background. The switch never forks: a fork stopped the event loop for 17-32 ms with a
million cards and taxed every write to its heap while the child lived (snapshot_builder.py).
At a graceful stop the switch writes one itself (snapshot_now): nothing is being answered
then.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import anyio
import msgspec

from switch import snapshot
from switch.config import SnapshotConfig
from switch.core import Switch

log = logging.getLogger("onecard.snapshot")

BUILDER_COMMAND = (sys.executable, "-m", "switch.snapshot_builder")
# What the log keeps of a failed builder's error output: its last lines say why.
BUILDER_ERROR_BYTES_MAX = 2048


def snapshot_now(switch: Switch) -> None:
    """Write a snapshot in this process at the appended position (graceful stop: it is
    then durable too)."""
    journal = switch.journal
    started = time.perf_counter()
    try:
        path = snapshot.write(
            switch.journal.directory.parent / snapshot.DIRECTORY,
            switch.engine,
            journal.appended_position,
            journal.last_chain,
            journal.chain_key,
        )
    except (OSError, pickle.PicklingError, TypeError) as exc:
        # A snapshot only saves time at the next start; failing one must not fail a stop.
        log.error("snapshot not written: %s", exc)
        return
    log.info("snapshot %s written in %.3f s", path.name, time.perf_counter() - started)


async def take_snapshots(switch: Switch, config: SnapshotConfig) -> None:
    """Forever: every `config.check_seconds`, if `config.records` or more records have been
    journalled since the last snapshot, have a builder write one at the durable position.
    A failed build is logged and tried again at the next check."""
    last = switch.snapshot_position
    data_dir = switch.journal.directory.parent
    engine_config = msgspec.json.encode(switch.engine.config)
    while True:
        await anyio.sleep(config.check_seconds)
        position = switch.journal.durable_position
        due = position > last and position - last >= config.records
        if due and await build_snapshot(data_dir, engine_config, position):
            last = position


async def build_snapshot(data_dir: Path, engine_config: bytes, position: int) -> bool:
    """Run a builder for the snapshot at `position` (durable) and wait for it; whether it
    wrote one. Cancelled, it kills the builder."""
    started = time.perf_counter()
    process = await anyio.open_process(
        [*BUILDER_COMMAND, str(data_dir), str(position)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Said when it starts, not only when it ends: the builder takes the other core for
    # seconds (a million cards: a replay from the last snapshot and a write of ~165 MB),
    # and whoever reads latencies from that time (onecard bench) needs to know.
    log.info("snapshot at record %d: builder %d writing", position, process.pid)
    try:
        assert process.stdin is not None and process.stderr is not None
        await process.stdin.send(engine_config)
        await process.stdin.aclose()
        errors = b""
        async for chunk in process.stderr:
            errors = (errors + chunk)[-BUILDER_ERROR_BYTES_MAX:]
        code = await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.aclose()
    if code != 0:
        why = errors.decode(errors="replace").strip().splitlines()
        log.error(
            "snapshot at record %d failed (builder %d, exit %d): %s",
            position,
            process.pid,
            code,
            why[-1] if why else "no error output",
        )
        return False
    log.info(
        "snapshot at record %d written by builder %d in %.3f s",
        position,
        process.pid,
        time.perf_counter() - started,
    )
    return True
