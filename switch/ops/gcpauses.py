"""How long the cyclic garbage collector stops the process, per pass and generation.

Every collection runs on whichever thread allocated last, holding the GIL: for its whole
length nothing is decided and nothing is answered. The caches replayed at start are frozen
out of its reach (switch/core.py), but what the switch keeps while it serves is not, so a
full (generation 2) pass grows with uptime. `onecard_gc_pause_seconds` shows whether it
does, next to the request histograms it would explain (docs/metrics.md).

The recorder rides on `gc.callbacks` (two Python calls per collection, about a thousand
collections a second at the pipelined peak: ~0.2% of a core).

It also ends such pauses. The caches' big dictionaries (transit state per card; until the
misuse rules moved to their own process, their last use per card) start empty, which
CPython leaves untracked, so the start-up freeze cannot reach them; they become tracked
with their first entry, and from then on every full pass walks all of them: with a million
cards, 25 ms to 1 s per pass under load, 56 passes in one `onecard bench` run
(docs/performance.md, "Fifth round"). So a full pass slower than FREEZE_AFTER_SECONDS has
`keep_young` freeze the collector's generations at its next tick. `gc.freeze()` is a list
splice, not a walk, and frozen objects are still freed by reference counting; only a
reference cycle frozen while alive is never collected. Freezing only after a slow pass
keeps that rare: nine freezes in a six-minute bench run that went up to full load, with
the frozen count steady near two million (some passes still read slow there because a busy
machine preempts them).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from switch.stats import LATENCY_BUCKETS_SECONDS, BucketHistogram

log = logging.getLogger("onecard.gc")

GENERATIONS = (0, 1, 2)
FULL = 2
# A full pass this slow means something big and long-lived sits in the collector's
# generations: the young objects of a switch between freezes take well under a millisecond.
FREEZE_AFTER_SECONDS = 0.005
# How often keep_young looks; a freeze waits at most this long after the slow pass.
FREEZE_CHECK_SECONDS = 1.0


class GcPauses:
    __slots__ = ("_started", "freeze_after_seconds", "freeze_due", "freezes_total", "seconds")

    def __init__(self, freeze_after_seconds: float = FREEZE_AFTER_SECONDS) -> None:
        self.seconds = {g: BucketHistogram(LATENCY_BUCKETS_SECONDS) for g in GENERATIONS}
        self.freeze_after_seconds = freeze_after_seconds
        self.freeze_due = False
        self.freezes_total = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        generation = info["generation"]
        self.seconds[generation].observe(elapsed)
        if generation == FULL and elapsed > self.freeze_after_seconds:
            self.freeze_due = True  # not here: the collector is still on the stack

    async def keep_young(self, check_seconds: float = FREEZE_CHECK_SECONDS) -> None:
        """Forever: after a slow full pass, move what the collector tracks out of its reach."""
        while True:
            await anyio.sleep(check_seconds)
            if self.freeze_due:
                self.freeze_due = False
                gc.freeze()
                self.freezes_total += 1
                log.info(
                    "garbage collector: a full pass took over %.0f ms; %d objects frozen",
                    1000 * self.freeze_after_seconds,
                    gc.get_freeze_count(),
                )

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Time every collection while inside."""
        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)
