"""How long the cyclic garbage collector stops the process, per pass and generation.

Every collection runs on whichever thread allocated last, holding the GIL: for its whole
length nothing is decided and nothing is answered. The caches replayed at start are frozen
out of its reach (switch/core.py), but what the switch keeps while it serves is not, so a
full (generation 2) pass grows with uptime. `onecard_gc_pause_seconds` shows whether it
does, next to the request histograms it would explain (docs/metrics.md).

The recorder rides on `gc.callbacks` (two Python calls per collection, about a thousand
collections a second at the pipelined peak: ~0.2% of a core).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from switch.stats import LATENCY_BUCKETS_SECONDS, BucketHistogram

GENERATIONS = (0, 1, 2)


class GcPauses:
    __slots__ = ("_started", "seconds")

    def __init__(self) -> None:
        self.seconds = {g: BucketHistogram(LATENCY_BUCKETS_SECONDS) for g in GENERATIONS}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]].observe(time.perf_counter() - self._started)

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Time every collection while inside."""
        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)
