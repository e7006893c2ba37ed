"""The settlement benchmark at a small scale: it generates, settles, and settles again to
the same digest (the 10-million-record run is docs/performance.md's, not the suite's)."""

from __future__ import annotations

from pathlib import Path

from settlement.bench import main, run

SMOKE_RECORDS = 20_000
# A few merchants: each payout report is a file written and synced.
SMOKE_MERCHANTS = 8


def test_the_benchmark_settles_what_it_generates(tmp_path: Path) -> None:
    first = run(tmp_path / "bench", SMOKE_RECORDS, 1, False, SMOKE_MERCHANTS)
    assert first.records == SMOKE_RECORDS
    assert first.movement_fen > 0 and first.segments == 1
    again = run(tmp_path / "bench", SMOKE_RECORDS, 1, True, SMOKE_MERCHANTS)
    assert again.generate_seconds == 0 and again.digest == first.digest
    cli = ["--records", "1000", "--merchants", "2", "--directory", str(tmp_path / "cli")]
    assert main(cli) == 0
