"""One card's transit state and the decision on one tap.

`decide_tap()` is pure: given the fare book, where the tap happened, the card's state, its
purse and category and the time, it returns a response code, what to charge and the card's
next state. The engine journals that next state inside the decision record, and replay
simply installs it: replay never re-prices a ride, so a fare change cannot rewrite history.

A ride is priced in this order: base fare → transfer discount → concession (free monthly
rides, then percentage). A missed tap-off or an abandoned journey found at the next tap is
charged first, at its farthest fare, without discounts.
"""

from __future__ import annotations

import msgspec

from protocols.codes import ResponseCode
from switch.transit.fares import (
    Concession,
    DistanceNetwork,
    FareBook,
    FlatLine,
    SectionalLine,
    distance_fare_fen,
    farthest_distance_fare_fen,
    farthest_sectional_fare_fen,
    network_distance_m,
    section_of,
    sectional_fare_fen,
)

C = ResponseCode
MS_PER_SECOND = 1000
MS_PER_MINUTE = 60_000


class TransitState(msgspec.Struct, frozen=True, array_like=True):
    """Everything transit remembers about one card; journalled whole after each change."""

    journey_line: str = ""  # an open journey: where and when it started
    journey_station: str = ""
    journey_started_ms: int = 0
    last_tap_line: str = ""
    last_tap_ms: int = 0
    single_charge_until_ms: int = 0  # flat line: further taps on it until then are free
    chain_last_end_ms: int = 0  # transfers: when the previous ride of the chain ended
    chain_transfers: int = 0
    rides_month: int = 0  # YYYYMM the free-ride counter belongs to
    free_rides_used: int = 0


NO_STATE = TransitState()


# The results below are made once or twice per tap: msgspec Structs without garbage
# collector tracking cost a fraction of a frozen dataclass's construction.


class Place(msgspec.Struct, frozen=True, gc=False):
    """Where a tap happened: the gate's line or network, station, and direction."""

    line: str
    station: str
    direction: str  # "entry" | "exit" | "" (validator: the switch pairs taps itself)


class TapResult(msgspec.Struct, frozen=True, gc=False):
    code: ResponseCode
    charge_fen: int = 0
    state: TransitState | None = None  # None: the card's state does not change


class _Charge(msgspec.Struct, frozen=True, gc=False):
    fen: int
    state: TransitState


def decide_tap(
    book: FareBook,
    place: Place,
    state: TransitState,
    purse_fen: int,
    category: str,
    now_ms: int,
    emergency_until_ms: int = 0,
) -> TapResult:
    line = book.lines.get(place.line)
    if line is None:
        return TapResult(C.NOT_PERMITTED_TO_TERMINAL)  # gate not configured for fares
    if (
        state.last_tap_line == line.id
        and now_ms - state.last_tap_ms < line.repeat_tap_seconds * MS_PER_SECOND
    ):
        return TapResult(C.EXCEEDS_FREQUENCY_LIMIT)
    state, owed_fen = _resolve_stale_journey(book, line, place, state, now_ms)
    if isinstance(line, FlatLine):
        result = _flat(book, line, state, category, now_ms)
    elif isinstance(line, DistanceNetwork):
        result = _distance(book, line, place, state, category, now_ms, emergency_until_ms)
    else:
        result = _sectional(book, line, place, state, category, now_ms)
    if result.code is not C.APPROVED or result.state is None:
        return result
    charge = owed_fen + result.charge_fen
    needed = max(charge, _entry_minimum(line, place, result))
    if purse_fen < needed:
        return TapResult(C.INSUFFICIENT_FUNDS)
    next_state = msgspec.structs.replace(result.state, last_tap_line=line.id, last_tap_ms=now_ms)
    return TapResult(C.APPROVED, charge, next_state)


def _entry_minimum(
    line: FlatLine | DistanceNetwork | SectionalLine, place: Place, result: TapResult
) -> int:
    """Opening a journey needs enough in the purse to pay for ending it."""
    assert result.state is not None
    if not result.state.journey_line:
        return 0
    if isinstance(line, DistanceNetwork):
        return line.entry_balance_min_fen
    if isinstance(line, SectionalLine):
        return farthest_sectional_fare_fen(line, result.state.journey_station)
    return 0


def _resolve_stale_journey(
    book: FareBook,
    line: FlatLine | DistanceNetwork | SectionalLine,
    place: Place,
    state: TransitState,
    now_ms: int,
) -> tuple[TransitState, int]:
    """Close a journey that can no longer end normally; returns what it owes."""
    if not state.journey_line:
        return state, 0
    open_line = book.lines.get(state.journey_line)
    if open_line is None:  # the line left the fare table: nothing sane to charge
        return _closed(state), 0
    age_ms = now_ms - state.journey_started_ms
    if isinstance(open_line, SectionalLine):
        missed = open_line.id != line.id or age_ms > open_line.max_journey_minutes * MS_PER_MINUTE
        if missed:  # the tap-off was missed: the farthest fare to the end of the line
            return _closed(state), farthest_sectional_fare_fen(open_line, state.journey_station)
    elif isinstance(open_line, DistanceNetwork):
        exiting_here = open_line.id == line.id and place.direction == "exit"
        if age_ms > open_line.max_inside_minutes * MS_PER_MINUTE and not exiting_here:
            # Never tapped out: an incomplete journey pays the farthest fare from its entry.
            # (An exit on the same network settles it below, with the overstay fare.)
            return _closed(state), farthest_distance_fare_fen(open_line, state.journey_station)
    return state, 0


def _closed(state: TransitState) -> TransitState:
    return msgspec.structs.replace(state, journey_line="", journey_station="", journey_started_ms=0)


def _flat(
    book: FareBook, line: FlatLine, state: TransitState, category: str, now_ms: int
) -> TapResult:
    if state.last_tap_line == line.id and now_ms < state.single_charge_until_ms:
        return TapResult(C.APPROVED, 0, state)  # the same boarding: charged once
    charged = _price_ride(book, line.fare_fen, state, category, now_ms, ride_start_ms=now_ms)
    if isinstance(charged, TapResult):
        return charged
    next_state = msgspec.structs.replace(
        charged.state, single_charge_until_ms=now_ms + line.single_charge_minutes * MS_PER_MINUTE
    )
    return TapResult(C.APPROVED, charged.fen, next_state)


def _distance(
    book: FareBook,
    network: DistanceNetwork,
    place: Place,
    state: TransitState,
    category: str,
    now_ms: int,
    emergency_until_ms: int,
) -> TapResult:
    inside = state.journey_line == network.id
    if place.direction == "entry":
        if inside:
            return TapResult(C.NOT_PERMITTED_TO_CARDHOLDER)  # anti-passback: already inside
        return TapResult(
            C.APPROVED,
            0,
            msgspec.structs.replace(
                state,
                journey_line=network.id,
                journey_station=place.station,
                journey_started_ms=now_ms,
            ),
        )
    if place.direction != "exit":
        return TapResult(C.NOT_PERMITTED_TO_TERMINAL)  # metro gates have a direction
    if not inside:
        if now_ms < emergency_until_ms:
            return TapResult(C.APPROVED, 0, state)  # emergency release: exits are free
        if network.exit_without_entry == "refuse":
            return TapResult(C.NOT_PERMITTED_TO_CARDHOLDER)  # anti-passback: no entry
        base = farthest_distance_fare_fen(network, place.station)
        ride_start_ms = now_ms
    else:
        if state.journey_station == place.station:
            base = network.same_station_fare_fen
        else:
            distance = network_distance_m(network, state.journey_station, place.station)
            base = distance_fare_fen(network, distance)
        if now_ms - state.journey_started_ms > network.max_inside_minutes * MS_PER_MINUTE:
            base += network.overstay_fare_fen
        ride_start_ms = state.journey_started_ms
    charged = _price_ride(book, base, _closed(state), category, now_ms, ride_start_ms)
    if isinstance(charged, TapResult):
        return charged
    return TapResult(C.APPROVED, charged.fen, charged.state)


def _sectional(
    book: FareBook,
    line: SectionalLine,
    place: Place,
    state: TransitState,
    category: str,
    now_ms: int,
) -> TapResult:
    here = section_of(line, place.station)
    if here is None:
        return TapResult(C.NOT_PERMITTED_TO_TERMINAL)  # the validator sent no known stop
    if state.journey_line != line.id:  # tap-on
        return TapResult(
            C.APPROVED,
            0,
            msgspec.structs.replace(
                state,
                journey_line=line.id,
                journey_station=place.station,
                journey_started_ms=now_ms,
            ),
        )
    boarded = section_of(line, state.journey_station) or 0
    base = sectional_fare_fen(line, abs(here - boarded))
    charged = _price_ride(
        book, base, _closed(state), category, now_ms, ride_start_ms=state.journey_started_ms
    )
    if isinstance(charged, TapResult):
        return charged
    return TapResult(C.APPROVED, charged.fen, charged.state)


def _price_ride(
    book: FareBook,
    base_fen: int,
    state: TransitState,
    category: str,
    now_ms: int,
    ride_start_ms: int,
) -> _Charge | TapResult:
    """Transfer discount, then concession; returns the charge and the state after it."""
    transfers = book.table.transfers
    fare = base_fen
    chain_transfers = 0
    if (
        state.chain_last_end_ms
        and ride_start_ms - state.chain_last_end_ms <= transfers.window_minutes * MS_PER_MINUTE
        and state.chain_transfers < transfers.max_count
    ):
        fare = max(0, fare - transfers.discount_fen)
        chain_transfers = state.chain_transfers + 1
    month = book.month(now_ms)
    free_used = state.free_rides_used if state.rides_month == month else 0
    concession = book.table.concessions.get(category)
    if concession is not None and fare > 0 and _applies(book, concession, now_ms):
        if concession.free_rides_per_month:
            if free_used < concession.free_rides_per_month:
                fare = 0
                free_used += 1
            elif concession.after_free_rides == "refuse":
                return TapResult(C.NOT_PERMITTED_TO_CARDHOLDER)  # free rides used up
        fare = fare * concession.percent_of_fare // 100  # rounds in the holder's favour
    return _Charge(
        fare,
        msgspec.structs.replace(
            state,
            chain_last_end_ms=now_ms,
            chain_transfers=chain_transfers,
            rides_month=month,
            free_rides_used=free_used,
        ),
    )


def _applies(book: FareBook, concession: Concession, now_ms: int) -> bool:
    return not (concession.off_peak_only and book.is_peak(now_ms))
