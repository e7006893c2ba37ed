"""The peak targets take the median round's switch/baseline ratio, each round pairing the
switch with the baseline measured beside it, and say every round's ratio."""

from __future__ import annotations

from bench.report import BASELINE, PEAK_ONE_IN_FLIGHT, PEAK_PIPELINED, SWITCH, Step, targets
from tests.bench.results import load_result


def peak(server: str, regime: str, rate: float, round_number: int) -> Step:
    result = load_result(achieved_rate_per_second=rate)
    return Step(
        f"{server} {regime} {round_number}", server, regime, None, result, round=round_number
    )


def test_the_median_round_decides_and_every_round_is_listed() -> None:
    steps = [
        # Pipelined: 40%, 55%, 48% by round; the rounds' baselines differ, so pairing
        # by round matters (across rounds the ratios would be other figures).
        peak(BASELINE, PEAK_PIPELINED, 100_000, 1),
        peak(SWITCH, PEAK_PIPELINED, 40_000, 1),
        peak(SWITCH, PEAK_PIPELINED, 66_000, 2),
        peak(BASELINE, PEAK_PIPELINED, 120_000, 2),
        peak(BASELINE, PEAK_PIPELINED, 150_000, 3),
        peak(SWITCH, PEAK_PIPELINED, 72_000, 3),
        # One in flight, two rounds: 60% and 50%; the lower median is 50%.
        peak(BASELINE, PEAK_ONE_IN_FLIGHT, 10_000, 1),
        peak(SWITCH, PEAK_ONE_IN_FLIGHT, 6_000, 1),
        peak(BASELINE, PEAK_ONE_IN_FLIGHT, 10_000, 2),
        peak(SWITCH, PEAK_ONE_IN_FLIGHT, 5_000, 2),
    ]
    pipelined, one_in_flight = targets(steps)[:2]
    assert pipelined.measured == "48.0% (median of 3 rounds: 40.0%, 55.0%, 48.0%)"
    assert pipelined.met is False
    assert one_in_flight.measured == "50.0% (median of 2 rounds: 60.0%, 50.0%)"
    assert one_in_flight.met is True


def test_one_round_reads_as_before_and_a_missing_regime_is_not_measured() -> None:
    steps = [peak(BASELINE, PEAK_PIPELINED, 100_000, 1), peak(SWITCH, PEAK_PIPELINED, 52_000, 1)]
    pipelined, one_in_flight = targets(steps)[:2]
    assert (pipelined.measured, pipelined.met) == ("52.0%", True)
    assert (one_in_flight.measured, one_in_flight.met) == ("not measured", None)
