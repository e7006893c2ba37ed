"""The garbage collector's pauses are timed while the recorder is installed, and only then."""

from __future__ import annotations

import gc

from switch.ops.gcpauses import GcPauses


def test_collections_are_timed_by_generation_while_recording() -> None:
    pauses = GcPauses()
    with pauses.recording():
        gc.collect(2)
        gc.collect(0)
    assert pauses.seconds[2].count == 1
    assert pauses.seconds[0].count >= 1  # the allocator may have run its own too
    assert pauses.seconds[2].total > 0
    assert pauses not in gc.callbacks
    before = {generation: h.count for generation, h in pauses.seconds.items()}
    gc.collect(2)
    assert {generation: h.count for generation, h in pauses.seconds.items()} == before
