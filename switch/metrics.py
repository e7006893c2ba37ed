"""Prometheus metrics, gathered at scrape time from counters the hot path keeps anyway.

Nothing here runs per request: the engine counts answers in a dict, the adapters and the
journal count into BucketHistograms, and this collector reads them when Prometheus
scrapes. Names follow Prometheus conventions (base units, `_total`, `_seconds`); labels
never carry a card number or any other high-cardinality value.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from switch.core import Switch
from switch.stats import BucketHistogram

CHANNEL = "terminal"


def _histogram(name: str, documentation: str, histogram: BucketHistogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["channel"])
    buckets, total = histogram.snapshot()
    family.add_metric([CHANNEL], buckets, total)
    return family


class SwitchCollector(Collector):
    def __init__(self, switch: Switch) -> None:
        self._switch = switch

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
        connections = GaugeMetricFamily(
            "onecard_connections_open", "Open connections, by channel.", labels=["channel"]
        )
        connections.add_metric([CHANNEL], stats.connections_open)
        yield connections
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


class MetricsServer:
    """prometheus-client's HTTP server, in its own daemon thread."""

    def __init__(self, switch: Switch, host: str, port: int) -> None:
        registry = CollectorRegistry()
        registry.register(SwitchCollector(switch))
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self._server.server_port

    def stop(self) -> None:
        # shutdown() waits out the server's 0.5 s poll; do that off the caller's path.
        def stop_and_close() -> None:
            self._server.shutdown()
            self._server.server_close()

        threading.Thread(target=stop_and_close, name="metrics-stop", daemon=True).start()
