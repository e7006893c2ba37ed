"""FareBook's calendar: the month a tap counts its free rides in, from a cache that must
agree with the calendar at every instant, in any order of asking, at every month's edge."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from switch.transit.fares import FareBook, FareTable

UTC = datetime.UTC
# 2000 .. 2100: the card's lifetime with a wide margin on both sides.
MS_MIN = int(datetime.datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MS_MAX = int(datetime.datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)


def calendar_month(now_ms: int, offset_minutes: int) -> int:
    local = datetime.datetime.fromtimestamp(now_ms / 1000, UTC) + datetime.timedelta(
        minutes=offset_minutes
    )
    # fromtimestamp rounds to microseconds; a millisecond count is exact there.
    return local.year * 100 + local.month


def month_edges(offset_minutes: int) -> list[int]:
    """The last and first millisecond around each local month start, 2025 .. 2027."""
    edges = []
    for year in range(2025, 2028):
        for month in range(1, 13):
            start = datetime.datetime(year, month, 1, tzinfo=UTC) - datetime.timedelta(
                minutes=offset_minutes
            )
            start_ms = int(start.timestamp() * 1000)
            edges += [start_ms - 1, start_ms]
    return edges


@given(
    st.lists(st.integers(MS_MIN, MS_MAX), min_size=1, max_size=30),
    st.sampled_from([480, 0, -300, 345]),
)
def test_month_agrees_with_the_calendar_in_any_order(times: list[int], offset: int) -> None:
    book = FareBook(FareTable(version=1, utc_offset_minutes=offset))
    for now_ms in times:
        assert book.month(now_ms) == calendar_month(now_ms, offset)


def test_month_turns_at_local_midnight_of_the_first() -> None:
    for offset in (480, 0, -300):
        book = FareBook(FareTable(version=1, utc_offset_minutes=offset))
        edges = month_edges(offset)
        for now_ms in edges + edges[::-1]:  # forwards, then backwards over the cache
            assert book.month(now_ms) == calendar_month(now_ms, offset)
        assert book.month(edges[1]) == 202501
        assert book.month(edges[0]) == 202412
