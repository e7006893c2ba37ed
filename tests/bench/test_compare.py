"""bench.compare names, row by row, whose snapshot child overlapped the row's steps: both
switches run through the whole session, so either's child can fall in the other's step."""

from __future__ import annotations

from pathlib import Path

import msgspec

from bench.compare import AFTER, BEFORE, Comparison, markdown
from bench.machine import describe
from bench.report import BASELINE, Step, snapshot_windows
from tests.bench.test_report_warnings import LOG, at, step


def row(name: str, start: str) -> list[Step]:
    """Before, after and baseline of one row, each 12 s from `start` (mm:ss past 16:00)."""
    minutes, seconds = map(int, start.split(":"))
    out = []
    for offset, server in enumerate((BEFORE, AFTER, BASELINE)):
        first = 60 * minutes + seconds + 12 * offset
        clock = [f"16:{t // 60:02d}:{t % 60:02d}" for t in (first, first + 12)]
        out.append(msgspec.structs.replace(step(f"{server} {name}", *clock), server=server))
    return out


def comparison(
    tmp_path: Path,
    steps: list[Step],
    after_snapshots: list[tuple[float, float]] | None = None,
    warnings: list[str] | None = None,
) -> Comparison:
    return Comparison(
        started_at="2026-11-29T16:00:00",
        command="python -m bench.compare --before x",
        machine=describe(tmp_path),
        before="x",
        after="y",
        steps=steps,
        snapshots={AFTER: after_snapshots or [], BEFORE: []},
        warnings=warnings or [],
    )


def test_each_row_names_the_switch_whose_snapshot_child_overlapped_it(tmp_path: Path) -> None:
    steps = [*row("quiet", "00:10"), *row("during", "01:20"), *row("late", "05:30")]
    windows = snapshot_windows(LOG, at("16:06:00"))

    text = markdown(comparison(tmp_path, steps, windows, ["switch sweep: something to say"]))
    rows = [line for line in text.splitlines() if line.startswith("| sweep")]
    assert [line.rsplit("|", 2)[-2].strip() for line in rows] == ["-", "after", "after"]
    assert "## Warnings\n\n- switch sweep: something to say" in text


def test_the_comparison_says_how_fast_the_machine_ran(tmp_path: Path) -> None:
    steps = [
        msgspec.structs.replace(step, speed_us=1.5 + offset)
        for offset, step in enumerate(row("quiet", "00:10"))
    ]
    text = markdown(comparison(tmp_path, steps))
    assert "best 1.50, median 2.50, worst 3.50 over 3 steps" in text
