"""The garbage collector's pauses are timed while the recorder is installed, and only then."""

from __future__ import annotations

import gc

import anyio
import pytest

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


@pytest.mark.anyio
async def test_a_slow_full_pass_has_the_collectors_generations_frozen() -> None:
    pauses = GcPauses(freeze_after_seconds=0.0)  # every full pass counts as slow
    young = [[index] for index in range(1000)]  # tracked containers, as the caches become
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(pauses.keep_young, 0.01)
            with pauses.recording():
                gc.collect(1)  # not a full pass: nothing due
                await anyio.sleep(0.05)
                assert pauses.freezes_total == 0
                gc.collect(2)
            assert pauses.freeze_due
            with anyio.fail_after(5):
                while not pauses.freezes_total:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
        assert not pauses.freeze_due
        # Out of the collector's reach now, and still alive and intact.
        assert all(not any(o is y for o in gc.get_objects()) for y in young[:3])
        assert young[999] == [999]
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_fast_full_passes_freeze_nothing() -> None:
    pauses = GcPauses(freeze_after_seconds=10.0)
    with pauses.recording():
        gc.collect(2)
    assert pauses.seconds[2].count == 1
    assert not pauses.freeze_due
