"""Cheap in-process histograms for the hot path.

prometheus_client's Histogram takes a lock and walks its buckets on every observe; the hot
path instead counts into plain lists (one bisect, one add, weighted by how many requests
shared the observation) and metrics.py turns them into Prometheus histograms at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


class BucketHistogram:
    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last bucket is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += weight
        self.count += weight
        self.total += value * weight

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets as Prometheus wants them, and the sum."""
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return buckets, self.total


# Sub-millisecond work needs buckets below 1 ms; the gate budget (300 ms) bounds the top.
LATENCY_BUCKETS_SECONDS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.3,
    1.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
