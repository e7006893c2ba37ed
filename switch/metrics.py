"""Prometheus metrics, gathered at scrape time from counters the hot path keeps anyway.

Nothing here runs per request: the engine counts answers in a dict, the adapters and the
journal count into BucketHistograms, and this collector reads them when Prometheus
scrapes. Names follow Prometheus conventions (base units, `_total`, `_seconds`); labels
never carry a card number or any other high-cardinality value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from switch.banks.metrics import CHANNEL as BANK_CHANNEL
from switch.banks.metrics import bank_metrics
from switch.core import Switch
from switch.ops.gcpauses import GcPauses
from switch.stats import BucketHistogram

if TYPE_CHECKING:
    from settlement.scheduler import SchedulerStatistics
    from switch.snapshotter import SnapshotStatistics

CHANNEL = "terminal"
ISO_CHANNEL = BANK_CHANNEL
# A gate that has not finished a deny-list download for this long while the list changed
# is stale: gates ask every minute (docs/protocol.md 4.6), so fifteen missed polls are no
# blip, and a card reported lost must be refused offline within a quarter of an hour.
DENYLIST_STALE_SECONDS = 15 * 60
try:
    VERSION = metadata.version("onecard")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "unknown"


def _histogram(name: str, documentation: str, histogram: BucketHistogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["channel"])
    buckets, total = histogram.snapshot()
    family.add_metric([CHANNEL], buckets, total)
    return family


class SwitchCollector(Collector):
    def __init__(self, switch: Switch) -> None:
        self._switch = switch
        # Hooks the service fills in (switch/service.py): the settlement scheduler's run
        # statistics, and open reconciliation exceptions per bank, which the scheduler
        # counts from the settlement store (reconciliation itself runs in `onecard settle
        # reconcile`, another process). Absent until counted, never a made-up 0.
        self.settlement: Callable[[], SchedulerStatistics] | None = None
        self.reconciliation: Callable[[], Mapping[str, int]] | None = None
        # The garbage collector's passes, once the service records them (switch/ops).
        self.gc_pauses: GcPauses | None = None
        # The snapshots the running switch writes (switch/snapshotter.py).
        self.snapshots: SnapshotStatistics | None = None

    def collect(self) -> Iterator[Metric]:
        switch = self._switch
        stats = switch.stats
        requests = CounterMetricFamily(
            "onecard_requests",
            "Requests answered, by channel, message type and response code.",
            labels=["channel", "type", "code"],
        )
        for (kind, code), count in sorted(dict(switch.engine.answered).items()):
            requests.add_metric([CHANNEL, kind, str(code)], count)
        payments = switch.engine.payments  # the ISO 8583 channel (switch/banks)
        for (kind, code), count in sorted(dict(payments.statistics.answered).items()):
            requests.add_metric([ISO_CHANNEL, kind, str(code)], count)
        yield requests
        yield _histogram(
            "onecard_request_duration_seconds",
            "From the read that carried a request to the write of its answer (includes "
            "waiting for the journal fsync).",
            stats.request_seconds,
        )
        yield _histogram(
            "onecard_authorisation_duration_seconds",
            "Engine time per request (batch time shared over the batch).",
            stats.authorise_seconds,
        )
        if self.gc_pauses is not None:
            gc_family = HistogramMetricFamily(
                "onecard_gc_pause_seconds",
                "Cyclic garbage collector passes, by generation: the whole process stops for each.",
                labels=["generation"],
            )
            for generation, histogram in self.gc_pauses.seconds.items():
                buckets, total = histogram.snapshot()
                gc_family.add_metric([str(generation)], buckets, total)
            yield gc_family
            yield CounterMetricFamily(
                "onecard_gc_freezes",
                "Times the switch froze the collector's generations after a slow full pass.",
                value=self.gc_pauses.freezes_total,
            )
        yield from self._snapshots()
        journal = switch.journal
        fsync_buckets, fsync_sum = journal.fsync_seconds.snapshot()
        yield HistogramMetricFamily(
            "onecard_journal_fsync_duration_seconds",
            "Time to write and fdatasync one journal group.",
            buckets=fsync_buckets,
            sum_value=fsync_sum,
        )
        group_buckets, group_sum = journal.group_records.snapshot()
        yield HistogramMetricFamily(
            "onecard_journal_group_records",
            "Records per journal group (group commit batch size).",
            buckets=group_buckets,
            sum_value=group_sum,
        )
        journal_stats = journal.statistics()
        yield CounterMetricFamily(
            "onecard_journal_written_bytes",
            "Bytes written to the journal.",
            value=journal_stats.bytes_written_total,
        )
        yield CounterMetricFamily(
            "onecard_journal_groups",
            "Journal groups written (one fdatasync each).",
            value=journal_stats.groups_total,
        )
        yield GaugeMetricFamily(
            "onecard_journal_durable_records",
            "Records in the journal known to be on disk.",
            value=journal_stats.durable_position,
        )
        yield GaugeMetricFamily(
            "onecard_journal_pending_bytes",
            "Bytes appended to the journal and not yet written.",
            value=journal_stats.pending_bytes,
        )
        yield GaugeMetricFamily(
            "onecard_journal_segments",
            "Journal segment files.",
            value=journal_stats.segments_total,
        )
        # A full disk stops the switch (JournalFailed): this is the warning before it.
        disk = os.statvfs(journal.directory)
        yield GaugeMetricFamily(
            "onecard_journal_filesystem_avail_bytes",
            "Space left to unprivileged writers on the journal's file system.",
            value=disk.f_bavail * disk.f_frsize,
        )
        yield GaugeMetricFamily(
            "onecard_journal_filesystem_size_bytes",
            "Size of the journal's file system.",
            value=disk.f_blocks * disk.f_frsize,
        )
        connections = GaugeMetricFamily(
            "onecard_connections_open", "Open connections, by channel.", labels=["channel"]
        )
        connections.add_metric([CHANNEL], stats.connections_open)
        connections.add_metric([ISO_CHANNEL], payments.statistics.connections_open)
        yield connections
        accepted = CounterMetricFamily(
            "onecard_connections_accepted",
            "Connections accepted (their number is the `connection` id in log lines).",
            labels=["channel"],
        )
        accepted.add_metric([CHANNEL], stats.connections_accepted_total)
        yield accepted
        refused = CounterMetricFamily(
            "onecard_connections_refused",
            "Connections refused at the connection limit.",
            labels=["channel"],
        )
        refused.add_metric([CHANNEL], stats.connections_refused_total)
        yield refused
        closed = CounterMetricFamily(
            "onecard_connections_closed_for_errors",
            "Connections closed because their byte stream could not be framed.",
            labels=["channel"],
        )
        closed.add_metric([CHANNEL], stats.connections_closed_for_errors_total)
        yield closed
        yield GaugeMetricFamily(
            "onecard_cards_cached",
            "Cards in the authorisation cache.",
            value=len(switch.engine.cards),
        )
        yield GaugeMetricFamily(
            "onecard_terminals_cached",
            "Terminals in the authorisation cache.",
            value=len(switch.engine.terminals),
        )
        yield from bank_metrics(payments, switch.clock())
        yield from self._caches()
        yield from self._settlement()
        info = GaugeMetricFamily(
            "onecard_build_info", "The running version (always 1).", labels=["version"]
        )
        info.add_metric([VERSION], 1.0)
        yield info

    def _snapshots(self) -> Iterator[Metric]:
        snapshots = self.snapshots
        if snapshots is None:
            return
        yield GaugeMetricFamily(
            "onecard_snapshot_records",
            "Journal records the newest snapshot covers; a restart replays the rest.",
            value=snapshots.position,
        )
        written = CounterMetricFamily(
            "onecard_snapshots",
            "Snapshots the running switch tried to write, by result (written, failed).",
            labels=["result"],
        )
        written.add_metric(["written"], snapshots.written_total)
        written.add_metric(["failed"], snapshots.failed_total)
        yield written
        yield GaugeMetricFamily(
            "onecard_snapshot_duration_seconds",
            "How long the last snapshot written took, from the fork to the child's exit.",
            value=snapshots.seconds,
        )

    def _caches(self) -> Iterator[Metric]:
        switch = self._switch
        engine = switch.engine
        denylist = engine.denylist
        version = denylist.version
        yield GaugeMetricFamily(
            "onecard_denylist_version",
            "The deny-list's version: bumped by every change of a card's blocking status.",
            value=version,
        )
        yield GaugeMetricFamily(
            "onecard_denylist_entries", "Cards on the deny-list.", value=len(denylist.blocked)
        )
        # list(): one atomic copy under the GIL, so the loop may add terminals meanwhile.
        terminals = list(engine.terminals.values())
        stale_before_ms = switch.clock() - DENYLIST_STALE_SECONDS * 1000
        synced = stale = 0
        for terminal in terminals:
            if terminal.denylist_synced_ms:
                synced += 1
                if (
                    terminal.denylist_version < version
                    and terminal.denylist_synced_ms < stale_before_ms
                ):
                    stale += 1
        yield GaugeMetricFamily(
            "onecard_denylist_gates_synced",
            "Gates that have downloaded the deny-list since the switch started.",
            value=synced,
        )
        yield GaugeMetricFamily(
            "onecard_denylist_gates_stale",
            "Gates behind the current deny-list whose last complete download is older than "
            f"{DENYLIST_STALE_SECONDS // 60} minutes.",
            value=stale,
        )
        yield GaugeMetricFamily(
            "onecard_idempotency_entries",
            "Decisions kept in the terminals' idempotency windows for retries.",
            value=sum(len(terminal.window) for terminal in terminals),
        )

    def _settlement(self) -> Iterator[Metric]:
        """Cycles from the journal-derived state (true across restarts); the scheduler's
        run figures when it runs in this process."""
        state = self._switch.engine.settlement
        last_close = state.last_close
        yield GaugeMetricFamily(
            "onecard_settlement_last_closed_cycle",
            "Number of the last closed settlement cycle (0: none yet).",
            value=0 if last_close is None else last_close.cycle,
        )
        if last_close is not None:
            yield GaugeMetricFamily(
                "onecard_settlement_last_cutover_timestamp_seconds",
                "Scheduled cutover of the last closed cycle, Unix time.",
                value=last_close.cutover_ms / 1000,
            )
        yield GaugeMetricFamily(
            "onecard_settlement_last_settled_cycle",
            "Number of the last cycle whose files were produced (0: none yet).",
            value=max(state.settled, default=0),
        )
        yield GaugeMetricFamily(
            "onecard_settlement_unsettled_cycles",
            "Closed cycles whose files are not produced yet.",
            value=len(state.unsettled()),
        )
        yield CounterMetricFamily(
            "onecard_settlement_reconciliation_resolutions",
            "Reconciliation exceptions resolved (journalled), since the journal began.",
            value=len(state.resolved),
        )
        if self.settlement is not None:
            statistics = self.settlement()
            yield GaugeMetricFamily(
                "onecard_settlement_next_cutover_timestamp_seconds",
                "When the open cycle is due to close, Unix time: in the past means late.",
                value=statistics.next_cutover_ms / 1000,
            )
            yield GaugeMetricFamily(
                "onecard_settlement_last_duration_seconds",
                "Time the last settlement in this run took (0: none yet).",
                value=statistics.last_settle_seconds,
            )
            yield CounterMetricFamily(
                "onecard_settlement_failures",
                "Settlement attempts that failed in this run (each retried).",
                value=statistics.settle_failures_total,
            )
        if self.reconciliation is not None:
            open_exceptions = GaugeMetricFamily(
                "onecard_settlement_reconciliation_exceptions_open",
                "Reconciliation exceptions not yet resolved, by bank.",
                labels=["bank"],
            )
            for bank, count in sorted(self.reconciliation().items()):
                open_exceptions.add_metric([bank], count)
            yield open_exceptions
