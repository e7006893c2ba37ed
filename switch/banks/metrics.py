"""Prometheus metrics of the ISO 8583 channel and the bank links, read at scrape time
(switch.metrics calls `bank_metrics`). Labels carry bank ids, never card numbers."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from switch.banks.state import PaymentState

CHANNEL = "iso8583"


def bank_metrics(state: PaymentState, now_ms: int) -> Iterator[Metric]:
    statistics = state.statistics
    banks = sorted(statistics.links_up)
    up = GaugeMetricFamily(
        "onecard_bank_link_up", "1 while the bank link is signed on.", labels=["bank"]
    )
    latency = HistogramMetricFamily(
        "onecard_bank_request_duration_seconds",
        "From a request sent to a bank to its answer.",
        labels=["bank"],
    )
    timeouts = CounterMetricFamily(
        "onecard_bank_timeouts", "Bank requests that timed out.", labels=["bank"]
    )
    depth = GaugeMetricFamily(
        "onecard_saf_entries",
        "Reversals and advices waiting to be delivered to the bank (store and forward).",
        labels=["bank"],
    )
    age = GaugeMetricFamily(
        "onecard_saf_oldest_age_seconds",
        "Age of the oldest undelivered reversal or advice (0 when none).",
        labels=["bank"],
    )
    for bank in banks:
        up.add_metric([bank], 1.0 if statistics.links_up[bank] else 0.0)
        buckets, total = statistics.bank_seconds[bank].snapshot()
        latency.add_metric([bank], buckets, total)
        timeouts.add_metric([bank], statistics.timeouts_total[bank])
        queue = state.saf.get(bank, {})
        depth.add_metric([bank], len(queue))
        oldest = next(iter(queue.values())).time_ms if queue else now_ms
        age.add_metric([bank], max(now_ms - oldest, 0) / 1000)
    yield from (up, latency, timeouts, depth, age)
    yield CounterMetricFamily(
        "onecard_standin_approvals",
        "Requests approved in stand-in for a bank (since the journal began).",
        value=state.standin_approvals_total,
    )
    yield GaugeMetricFamily(
        "onecard_standin_exposure_fen",
        "Fen approved in stand-in today and yesterday, not yet confirmed by an advice.",
        value=sum(state.standin_used_fen.values()),
    )
    yield CounterMetricFamily(
        "onecard_bank_late_replies",
        "Bank answers that arrived after their request timed out (matched and journalled).",
        value=state.late_replies_total,
    )
    yield CounterMetricFamily(
        "onecard_bank_unmatched_replies",
        "Bank messages that matched no request or queue entry, or failed their MAC.",
        value=statistics.unmatched_replies_total + statistics.bad_mac_replies_total,
    )
    yield GaugeMetricFamily(
        "onecard_holds_open",
        "Pre-authorisation holds not yet completed or released.",
        value=len(state.holds),
    )
    yield GaugeMetricFamily(
        "onecard_bank_requests_pending",
        "Requests waiting for a bank's answer.",
        value=len(state.pending),
    )
