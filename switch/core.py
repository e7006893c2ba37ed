"""The switch as the network adapters see it: engine + journal + channel statistics.

`open_switch()` recovers the caches from the journal; `Switch.process_reads()` is the one
call an adapter makes per batch of reads (`process()` for a single read). Both adapters
(asyncio Protocol, trio streams) share it, so the hot-path logic exists once.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocols.terminal.codec import RejectedFrame, RequestFrame
from switch import snapshot
from switch.config import Config
from switch.engine import Engine
from switch.errors import SnapshotMismatch
from switch.journal import Journal, Record, RecoveryReport, recover
from switch.journal.records import FareTableActivated
from switch.keystore import KeyStore
from switch.stats import LATENCY_BUCKETS_SECONDS, BucketHistogram
from switch.transit.fares import encode_fare_table, load_fare_table

log = logging.getLogger("onecard.switch")

# Connections a switch accepts at once. A city's gates and POS reach us mostly through
# station concentrators; 10,000 direct connections is several times Shiyan's fleet and
# stays well under the default open-file limit we raise to at start.
CONNECTIONS_MAX = 10_000
# Requests one connection may have decided but not yet answered before we stop reading
# from it: bounds the memory a single pipelining peer can pin, and makes a flood from one
# concentrator wait on itself rather than on everyone.
IN_FLIGHT_MAX = 1024
# How long a graceful stop waits for peers to close after their last answer and our FIN.
LINGER_SECONDS_MAX = 2.0
# Bytes asked of the kernel per read (trio adapter); 64 KiB holds ~1,000 requests.
RECEIVE_BYTES = 64 * 1024


class ChannelStatistics:
    """What the terminal channel adapters count; exported by switch.metrics."""

    __slots__ = (
        "authorise_seconds",
        "connections_accepted_total",
        "connections_closed_for_errors_total",
        "connections_open",
        "connections_refused_total",
        "request_seconds",
    )

    def __init__(self) -> None:
        self.connections_open = 0
        # Also numbers the connections for log lines (correlation id `connection`).
        self.connections_accepted_total = 0
        self.connections_refused_total = 0
        self.connections_closed_for_errors_total = 0
        # From the read that carried a request to the write of its answer, weighted per
        # request: the switch's share of a gate's 300 ms.
        self.request_seconds = BucketHistogram(LATENCY_BUCKETS_SECONDS)
        # Engine time alone, per request (batch time shared out over the batch).
        self.authorise_seconds = BucketHistogram(LATENCY_BUCKETS_SECONDS)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Switch:
    engine: Engine
    journal: Journal
    recovery: RecoveryReport
    stats: ChannelStatistics
    # The one place the switch reads the time; tests and simulations pass their own.
    clock: Callable[[], int] = wall_clock_ms
    # How long the start-up replay took (onecard_recovery_duration_seconds).
    recovery_seconds: float = 0.0
    # The position of the snapshot the replay started from (0: the whole journal).
    snapshot_position: int = 0

    def process(self, frames: list[RequestFrame | RejectedFrame]) -> tuple[bytes, int]:
        """Decide one read's frames; returns the answers and the journal position they
        must wait for (process_reads with one read)."""
        outs, position = self.process_reads([frames])
        return outs[0], position

    def process_reads(
        self, reads: list[list[RequestFrame | RejectedFrame]]
    ) -> tuple[list[bytes], int]:
        """Decide the frames of several reads (from any connections) as one batch: one
        engine pass, one journal append. Returns each read's answers, in order, and the
        journal position they must all wait for. The position covers everything appended
        so far, not only this batch: a retry answered from the idempotency window must
        not overtake the still undurable original."""
        records: list[Record] = []
        started = time.perf_counter()
        now_ms = self.clock()
        authorise = self.engine.authorise
        outs = [authorise(frames, now_ms, records) for frames in reads]
        position = self.journal.append(records)
        count = sum(map(len, reads))
        self.stats.authorise_seconds.observe((time.perf_counter() - started) / count, count)
        return outs, position

    def submit(self, records: list[Record]) -> int:
        """Apply administrative records (fare tables, status changes) to the caches and
        journal them in the same group as the requests around them; returns the position
        to wait for. The caches change first, so the very next batch sees the change."""
        for record in records:
            self.engine.apply(record)
        return self.journal.append(records)

    def fares_update(self, path: Path, now_ms: int) -> FareTableActivated | None:
        """A record activating the table at `path` from now, if it is newer than the one
        in force; None when it is not. Raises ConfigError for an unusable file."""
        table = load_fare_table(path)
        current = self.engine.fare_books[-1][1].table.version if self.engine.fare_books else 0
        if table.version <= current:
            return None
        return FareTableActivated(now_ms, table.version, now_ms, encode_fare_table(table))


def _applier(engine: Engine) -> Callable[[int, Record], None]:
    return lambda _index, record: engine.apply(record)


def _replay(data_dir: Path, config: Config, keys: KeyStore) -> tuple[Engine, RecoveryReport, int]:
    """The caches from the newest usable snapshot plus the journal after it, or from the
    whole journal. Returns the engine, the recovery report and the snapshot's position (0:
    none used)."""
    journal_dir = data_dir / "journal"
    for path in snapshot.candidates(data_dir / snapshot.DIRECTORY):
        found = snapshot.read(path, keys.journal, keys.terminals)
        if found is None:
            continue
        if found.engine.config != config.engine:
            log.warning("snapshot %s: another engine configuration; not used", path.name)
            continue
        try:
            report = recover(
                journal_dir,
                _applier(found.engine),
                keys.journal,
                resume=(found.position, found.chain),
            )
        except SnapshotMismatch as exc:
            log.warning("snapshot %s does not fit the journal (%s); not used", path.name, exc)
            continue
        return found.engine, report, found.position
    engine = Engine(config.engine, keys.terminals)
    return engine, recover(journal_dir, _applier(engine), keys.journal), 0


def open_switch(data_dir: Path, config: Config, clock: Callable[[], int] = wall_clock_ms) -> Switch:
    """Load keys, replay the journal into fresh caches and open it for appending."""
    keys = KeyStore.load(data_dir)
    journal_dir = data_dir / "journal"
    journal_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # The replay builds the long-lived caches and frees next to nothing, so the cyclic
    # collector's passes over the growing heap are pure cost: about an eighth of a restart
    # from a snapshot (docs/performance.md). It runs again once the caches are frozen below.
    collecting = gc.isenabled()
    gc.disable()
    try:
        engine, report, resumed_from = _replay(data_dir, config, keys)
    finally:
        if collecting:
            gc.enable()
    recovery_seconds = time.perf_counter() - started
    log.info(
        "recovery: %d records (%s) from %d segments in %.3f s; %d cards, %d terminals%s",
        report.records,
        f"snapshot at {resumed_from} + {report.records - resumed_from} replayed"
        if resumed_from
        else "all replayed",
        report.segments,
        recovery_seconds,
        len(engine.cards),
        len(engine.terminals),
        f"; TORN TAIL of {report.truncated_bytes} bytes truncated in {report.truncated_segment}"
        if report.truncated_bytes
        else "",
    )
    # The caches just replayed live as long as the process: move them out of the cyclic
    # collector's reach, so that its full collections stop walking every card and stalling
    # every answer for a tenth of a second or more (docs/performance.md).
    gc.freeze()
    switch = Switch(
        engine,
        Journal(journal_dir, report),
        report,
        ChannelStatistics(),
        clock,
        recovery_seconds,
        resumed_from,
    )
    activation = switch.fares_update(Path(config.fares), clock())
    if activation is not None:
        switch.submit([activation])  # durable with the first group the writer writes
        log.info("fare table version %d from %s activated", activation.version, config.fares)
    return switch
