"""The bench times a fixed piece of Python before every step and the report says how fast
the machine ran: absolute figures of two runs compare only when these do."""

from __future__ import annotations

import math
from pathlib import Path

from bench.machine import describe, python_speed_us
from bench.report import SWEEP, SWITCH, Report, Step, markdown
from tests.bench.results import load_result


def report(speeds: list[float], tmp_path: Path) -> Report:
    steps = [
        Step(f"switch sweep {n}", SWITCH, SWEEP, 0.1 * n, load_result(), speed_us=speed)
        for n, speed in enumerate(speeds, start=1)
    ]
    return Report(
        started_at="2026-11-30T04:00:00+00:00",
        command="onecard bench",
        machine=describe(tmp_path),
        options={},
        sweep_peak_per_second=1000.0,
        steps=steps,
        targets=[],
        warnings=[],
    )


def test_the_speed_probe_times_real_work() -> None:
    speed = python_speed_us()
    assert math.isfinite(speed)
    assert 0.05 < speed < 1000  # microseconds an iteration, on any machine that runs tests


def test_the_report_gives_the_best_median_and_worst_speed(tmp_path: Path) -> None:
    text = markdown(report([2.5, 1.25, 0.0, 4.0], tmp_path))  # 0: a step not measured
    assert "best 1.25, median 2.50, worst 4.00 over 3 steps" in text


def test_a_report_of_results_without_speeds_says_nothing_of_speed(tmp_path: Path) -> None:
    assert "Python speed" not in markdown(report([0.0, 0.0], tmp_path))
