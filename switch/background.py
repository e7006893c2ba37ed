"""What the switch's background processes share: they run only on CPU that nothing else
wants. The snapshot child (snapshotter.py) and the misuse follower (misuse/follower.py)
do work that can wait seconds or minutes; the answers cannot.
"""

from __future__ import annotations

import os

# The niceness increment: the lowest priority there is (Linux: 19). Where the OS has
# SCHED_IDLE (Linux) the process also takes that policy, which niceness alone is not: a
# nice-19 snapshot child still took the CPU from the switch's main thread on wakeups, and
# at 10,000 taps/s with 1M cards snapshots every ~10 s tripled p99 (docs/performance.md).
NICENESS = 19


def lowest_priority() -> None:
    """Make this process run only when nothing else wants the CPU."""
    os.nice(NICENESS)
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
