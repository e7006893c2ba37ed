"""Taking snapshots while the switch serves (switch/snapshot.py says what one is).

A forked child pickles the engine and writes the file; the parent goes on serving and only
reaps the child in a worker thread. The fork is the point in time: the child sees the
engine exactly as the journal's appended records left it, copy-on-write, without a pause
proportional to the number of cards. Records appended but not yet durable at the fork may
yet be lost in a crash: recovery then finds the journal shorter than the snapshot or with
another chain value there, and falls back to the previous snapshot (three are kept).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass

import anyio

from switch import snapshot
from switch.background import lowest_priority
from switch.config import SnapshotConfig
from switch.core import Switch

log = logging.getLogger("onecard.snapshot")


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


@dataclass
class SnapshotStatistics:
    """What take_snapshots counts; exported by switch.metrics."""

    position: int = 0  # journal records the newest snapshot covers (0: none)
    written_total: int = 0
    failed_total: int = 0
    seconds: float = 0.0  # the last snapshot written: from the fork to the child's exit


async def take_snapshots(
    switch: Switch, config: SnapshotConfig, statistics: SnapshotStatistics | None = None
) -> None:
    """Forever: when enough has been journalled, fork a child that writes a snapshot."""
    last = switch.recovery.next_index
    if statistics is None:
        statistics = SnapshotStatistics(switch.snapshot_position)
    while True:
        await anyio.sleep(config.check_seconds)
        journal = switch.journal
        position, chain = journal.appended_position, journal.last_chain
        if position - last < config.records:
            continue
        started = time.perf_counter()
        pid = os.fork()
        forked = time.perf_counter()
        if pid == 0:  # the child: write and leave without running anything of the parent's
            code = 1
            try:
                # Background work: a million cards take a core for seconds, and the
                # switch answering terminals must win every contest for the CPU.
                lowest_priority()
                snapshot.write(
                    journal.directory.parent / snapshot.DIRECTORY,
                    switch.engine,
                    position,
                    chain,
                    journal.chain_key,
                )
                code = 0
            except BaseException as exc:
                # Why, for the log beside the parent's "failed" line. Not through logging:
                # a lock another thread of the parent held at the fork stays held here.
                os.write(2, f"snapshot child: {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        # Said when it starts, not only when it ends: the child takes a core for as long
        # as it encodes and writes (5-20 s for a million cards under load), and whoever
        # reads latencies from that time (onecard bench's warnings) needs to know.
        # The fork copies the page tables, so it pauses the serving loop for a time that
        # grows with the caches (~20 ms for a million cards): said, for whoever reads a
        # tail latency from that moment.
        log.info(
            "snapshot at record %d: child %d writing (fork took %.1f ms)",
            position,
            pid,
            1000 * (forked - started),
        )
        _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) == 0:
            last = position
            statistics.position = position
            statistics.written_total += 1
            statistics.seconds = seconds
            log.info("snapshot at record %d written by child %d in %.3f s", position, pid, seconds)
        else:
            statistics.failed_total += 1
            log.error("snapshot at record %d failed (child %d, status %d)", position, pid, status)
