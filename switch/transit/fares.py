"""Fare tables: what a ride costs.

A fare table is a versioned TOML document (docs/fares.md) with three kinds of line:

- `flat`      a bus line with one fare per boarding (single tap);
- `distance`  a metro network priced by the distance between entry and exit stations;
- `sectional` a bus line with tap-on and tap-off, priced by sections travelled;

plus transfer discounts, concessions by card category and the weekday peak windows. This
module is pure: it loads and prices, and never reads the clock.
"""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from switch.errors import ConfigError

NonNegativeFen = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
Minutes = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 60)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=24 * 60 * 60)]
METRES_PER_KM = 1000
# Shiyan keeps China Standard Time all year; months and peak hours are local.
CHINA_UTC_OFFSET_MINUTES = 8 * 60


class Band(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    up_to_km: Annotated[float, msgspec.Meta(gt=0)]
    fare_fen: NonNegativeFen


class Beyond(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Past the last band: `fare_fen` more for every `every_km` or part of it."""

    every_km: Annotated[float, msgspec.Meta(gt=0)]
    fare_fen: NonNegativeFen


class DistanceNetwork(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    # Station id -> position along the network in km. Distances are differences of
    # positions unless `distances` names a pair (for stations on different lines).
    stations: dict[str, float]
    bands: list[Band]
    beyond: Beyond | None = None
    distances: list[tuple[str, str, float]] = []
    same_station_fare_fen: NonNegativeFen = 300
    max_inside_minutes: Minutes = 240
    overstay_fare_fen: NonNegativeFen = 300
    # Tapping out with no tap-in recorded: refuse (anti-passback) or charge the farthest
    # fare from the exit station.
    exit_without_entry: Literal["refuse", "farthest_fare"] = "refuse"
    entry_balance_min_fen: NonNegativeFen = 300
    repeat_tap_seconds: Seconds = 2


class FlatLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    fare_fen: NonNegativeFen
    repeat_tap_seconds: Seconds = 20
    # A second tap on the same line within this many minutes is not a new ride.
    single_charge_minutes: Minutes = 3


class Stop(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    section: Annotated[int, msgspec.Meta(ge=0)]


class SectionalLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    stops: list[Stop]
    # Index = sections travelled; journeys past the end pay the last entry.
    section_fares_fen: list[NonNegativeFen]
    repeat_tap_seconds: Seconds = 20
    # A journey still open after this long had its tap-off missed.
    max_journey_minutes: Minutes = 180


class Transfers(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window_minutes: Minutes = 90
    discount_fen: NonNegativeFen = 0
    max_count: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2


class Concession(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    percent_of_fare: Percent = 100
    free_rides_per_month: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    after_free_rides: Literal["full_fare", "refuse"] = "full_fare"
    off_peak_only: bool = False


class FareTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)]
    flat: list[FlatLine] = []
    distance: list[DistanceNetwork] = []
    sectional: list[SectionalLine] = []
    transfers: Transfers = Transfers()
    concessions: dict[str, Concession] = {}
    # Weekday windows, local time "HH:MM-HH:MM", when off-peak-only concessions lapse.
    peak_windows: list[str] = []
    utc_offset_minutes: int = CHINA_UTC_OFFSET_MINUTES


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
Line = FlatLine | DistanceNetwork | SectionalLine


class FareBook:
    """A fare table made ready for lookups once, when it is activated."""

    __slots__ = ("_month", "lines", "peak_windows", "table")

    def __init__(self, table: FareTable) -> None:
        self.table = table
        self.lines: dict[str, Line] = {line.id: line for line in _lines(table)}
        self.peak_windows = [parse_window(window) for window in table.peak_windows]
        # (first ms, end ms, YYYYMM) of the month asked for last: every tap asks, and
        # almost always for the month it asked before.
        self._month = (0, 0, 0)

    def is_peak(self, now_ms: int) -> bool:
        local_minutes = now_ms // 60_000 + self.table.utc_offset_minutes
        weekday = (local_minutes // (24 * 60) + 3) % 7  # 1970-01-01 was a Thursday (3)
        minute_of_day = local_minutes % (24 * 60)
        return weekday < 5 and any(a <= minute_of_day < b for a, b in self.peak_windows)

    def month(self, now_ms: int) -> int:
        """The local calendar month as YYYYMM: free rides lapse when it changes."""
        first_ms, end_ms, month = self._month
        if first_ms <= now_ms < end_ms:
            return month
        offset_ms = self.table.utc_offset_minutes * 60_000
        local = _EPOCH + datetime.timedelta(milliseconds=now_ms + offset_ms)
        first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (first + datetime.timedelta(days=32)).replace(day=1)
        self._month = (
            _epoch_ms(first) - offset_ms,
            _epoch_ms(following) - offset_ms,
            local.year * 100 + local.month,
        )
        return self._month[2]


def _epoch_ms(moment: datetime.datetime) -> int:
    return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)


def _lines(table: FareTable) -> list[Line]:
    lines: list[Line] = [*table.flat]
    lines.extend(table.distance)
    lines.extend(table.sectional)
    return lines


def parse_fare_table(text: str, source: str = "fare table") -> FareTable:
    try:
        table = msgspec.convert(tomllib.loads(text), FareTable)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    _check(table, source)
    return table


def load_fare_table(path: Path) -> FareTable:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_fare_table(text, str(path))


def encode_fare_table(table: FareTable) -> bytes:
    """The canonical bytes of a table, as journalled."""
    return msgspec.msgpack.encode(table)


def decode_fare_table(data: bytes) -> FareTable:
    return msgspec.msgpack.decode(data, type=FareTable)


def _check(table: FareTable, source: str) -> None:
    ids = [line.id for line in _lines(table)]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{source}: line ids must be unique")
    for network in table.distance:
        if not network.bands:
            raise ConfigError(f"{source}: network {network.id} has no fare bands")
        limits = [band.up_to_km for band in network.bands]
        if limits != sorted(limits) or len(set(limits)) != len(limits):
            raise ConfigError(f"{source}: network {network.id} bands must increase")
        for a, b, _km in network.distances:
            if a not in network.stations or b not in network.stations:
                raise ConfigError(f"{source}: network {network.id} distance names unknown stations")
    for line in table.sectional:
        if not line.section_fares_fen or not line.stops:
            raise ConfigError(f"{source}: sectional line {line.id} needs stops and fares")
    for window in table.peak_windows:
        parse_window(window, source)


def parse_window(window: str, source: str = "peak window") -> tuple[int, int]:
    """'07:00-09:00' -> (420, 540) minutes of the day, end exclusive."""
    try:
        start, end = window.split("-")
        start_minute = int(start[:2]) * 60 + int(start[3:5])
        end_minute = int(end[:2]) * 60 + int(end[3:5])
    except (ValueError, IndexError):
        raise ConfigError(f"{source}: peak window {window!r} is not HH:MM-HH:MM") from None
    if not 0 <= start_minute < end_minute <= 24 * 60:
        raise ConfigError(f"{source}: peak window {window!r} is empty or out of the day")
    return start_minute, end_minute


# -- pricing --------------------------------------------------------------------------------


def metres(km: float) -> int:
    return round(km * METRES_PER_KM)


def network_distance_m(network: DistanceNetwork, a: str, b: str) -> int:
    for x, y, km in network.distances:
        if {x, y} == {a, b}:
            return metres(km)
    return abs(metres(network.stations[a]) - metres(network.stations[b]))


def distance_fare_fen(network: DistanceNetwork, distance_m: int) -> int:
    for band in network.bands:
        if distance_m <= metres(band.up_to_km):
            return band.fare_fen
    last = network.bands[-1]
    if network.beyond is None:
        return last.fare_fen
    beyond_m = distance_m - metres(last.up_to_km)
    step_m = metres(network.beyond.every_km)
    steps = -(-beyond_m // step_m)  # "or part of it": round up
    return last.fare_fen + steps * network.beyond.fare_fen


def farthest_distance_fare_fen(network: DistanceNetwork, station: str) -> int:
    return max(
        distance_fare_fen(network, network_distance_m(network, station, other))
        for other in network.stations
    )


def section_of(line: SectionalLine, stop: str) -> int | None:
    for candidate in line.stops:
        if candidate.id == stop:
            return candidate.section
    return None


def sectional_fare_fen(line: SectionalLine, sections: int) -> int:
    return line.section_fares_fen[min(sections, len(line.section_fares_fen) - 1)]


def farthest_sectional_fare_fen(line: SectionalLine, stop: str) -> int:
    """A missed tap-off pays the fare to whichever end of the line is farther."""
    here = section_of(line, stop) or 0
    ends = (line.stops[0].section, line.stops[-1].section)
    return sectional_fare_fen(line, max(abs(here - end) for end in ends))
