"""The bench says which steps a switch snapshot child overlapped: it takes a core for as
long as it writes, and a latency figure from that time must not pass for the switch's."""

from __future__ import annotations

import time

import msgspec

from bench.report import SWEEP, SWITCH, Step, snapshot_windows, warnings
from tests.bench.results import load_result

SNAPSHOT = "onecard.snapshot: snapshot at record"
LOG = f"""\
2026-11-29 16:00:00,001 INFO onecard.switch: recovery: 10 records
2026-11-29 16:01:09,120 INFO {SNAPSHOT} 2444807: child 10501 writing
2026-11-29 16:02:10,529 INFO {SNAPSHOT} 2444807 written by child 10501 in 60.850 s
2026-11-29 16:03:10,000 INFO {SNAPSHOT} 3100107: child 10593 writing
2026-11-29 16:03:30,000 ERROR {SNAPSHOT} 3100107 failed (child 10593, status 256)
2026-11-29 16:05:00,000 INFO {SNAPSHOT} 3600000: child 10700 writing
"""


def at(clock: str) -> float:
    return time.mktime(time.strptime(f"2026-11-29 {clock}", "%Y-%m-%d %H:%M:%S"))


def step(name: str, start: str, end: str) -> Step:
    return Step(name, SWITCH, SWEEP, 0.5, load_result(), at(start), at(end))


def test_snapshot_windows_from_the_switch_log() -> None:
    end = at("16:06:00")
    assert snapshot_windows(LOG, end) == [
        (at("16:01:09"), at("16:02:10") + 1),
        (at("16:03:10"), at("16:03:30") + 1),
        (at("16:05:00"), end),  # still writing when the switch stopped
    ]


def test_steps_that_overlap_a_snapshot_child_are_flagged_and_no_others() -> None:
    windows = snapshot_windows(LOG, at("16:06:00"))
    steps = [
        step("before", "16:00:10", "16:00:22"),
        step("during", "16:01:30", "16:01:42"),
        step("between", "16:02:20", "16:02:32"),
        step("at the end", "16:05:30", "16:05:42"),
    ]
    flagged = [w for w in warnings(steps, windows) if "snapshot child" in w]
    assert [w.split(":")[0] for w in flagged] == ["during", "at the end"]
    assert msgspec.json.decode(msgspec.json.encode(steps[0]), type=Step) == steps[0]
