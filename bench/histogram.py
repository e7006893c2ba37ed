"""Latency samples into HDR histograms, and the percentiles the reports quote.

The load generator appends raw microseconds to an array on the hot path (a C append) and
builds the HDR histogram once the run is over: `HdrHistogram.record_value` costs about as
much as signing a request, and the generator must stay cheaper than the server.
"""

from __future__ import annotations

from array import array
from collections import Counter

import msgspec
from hdrh.histogram import HdrHistogram

# 1 µs .. 60 s at 3 significant digits: below 1 µs the clock is noise; a request not
# answered within a minute is reported as unanswered anyway.
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
MICROSECONDS_PER_MS = 1000.0


class LatencySummary(msgspec.Struct, frozen=True):
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    p9999_ms: float
    max_ms: float
    # The whole histogram (HdrHistogram.encode: compressed, base64), for later analysis.
    hdr: str


def samples() -> array[int]:
    """A buffer for latency samples in microseconds."""
    return array("q")


def summarise(samples_us: array[int]) -> LatencySummary:
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    # Runs repeat values a lot at microsecond resolution: record each distinct one once.
    for value, count in Counter(samples_us).items():
        histogram.record_value(min(max(value, LOWEST_US), HIGHEST_US), count)

    def at(percentile: float) -> float:
        return float(histogram.get_value_at_percentile(percentile)) / MICROSECONDS_PER_MS

    total = int(histogram.get_total_count())
    return LatencySummary(
        count=total,
        mean_ms=float(histogram.get_mean_value()) / MICROSECONDS_PER_MS if total else 0.0,
        p50_ms=at(50.0),
        p90_ms=at(90.0),
        p99_ms=at(99.0),
        p999_ms=at(99.9),
        p9999_ms=at(99.99),
        max_ms=float(histogram.get_max_value()) / MICROSECONDS_PER_MS if total else 0.0,
        hdr=bytes(histogram.encode()).decode("ascii"),
    )
