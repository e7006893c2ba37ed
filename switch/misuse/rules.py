"""The misuse rules, sans-I/O: approved uses of cards in, findings out.

    impossible_travel  two uses of one card too far apart for the time between them
    qr_and_chip        an e-card scan and a chip tap of one card, far apart, within minutes

Each finding names the two journal records (their indexes) that show it. The rules keep
only each card's latest use (one small record per card), so memory follows the number of
cards, not of decisions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import msgspec

from switch.journal.records import Decision
from switch.misuse.config import MisuseConfig
from switch.misuse.places import Position, distance_km
from switch.transit.rides import Place

APPROVED = "00"
HOUR_MS = 3_600_000
# Uses that put a card somewhere: a gate tap, a purchase, a scan (e-card).
PLACED_KINDS = frozenset({"tap", "purchase", "scan"})


class Rule(enum.StrEnum):
    IMPOSSIBLE_TRAVEL = "impossible_travel"
    QR_AND_CHIP = "qr_and_chip"


class Use(msgspec.Struct, frozen=True, gc=False):
    """A card's latest use. One per card for as long as the switch runs (a million or
    more): untracked by the cyclic collector, which would otherwise walk them all at every
    full collection. Scalars and a tuple of floats cannot form a cycle."""

    index: int
    time_ms: int
    position: Position | None
    qr: bool


class Finding(msgspec.Struct, frozen=True, array_like=True):
    """Sent from the follower process to the watcher (misuse/wire.py)."""

    card: str
    rule: Rule
    evidence: tuple[int, int]
    detail: str


class MisuseRules:
    def __init__(self, config: MisuseConfig, places: Mapping[str, Position]) -> None:
        self.config = config
        self.places = places
        self.last: dict[str, Use] = {}

    def position(self, place: Place, stop: str) -> Position | None:
        station = stop or place.station
        return self.places.get(f"{place.line}/{station}") if station else None

    def observe(self, index: int, decision: Decision, place: Place | None) -> list[Finding]:
        """One durable decision, with the place of its terminal (None: unknown)."""
        if decision.code != APPROVED or decision.kind not in PLACED_KINDS or not decision.card:
            return []
        position = None if place is None else self.position(place, decision.detail)
        use = Use(index, decision.time_ms, position, decision.kind == "scan")
        previous = self.last.get(decision.card)
        self.last[decision.card] = use
        if previous is None or previous.position is None or position is None:
            return []
        return self._judge(decision.card, previous, use)

    def _judge(self, card: str, before: Use, after: Use) -> list[Finding]:
        assert before.position is not None and after.position is not None
        km = distance_km(before.position, after.position)
        elapsed_ms = max(after.time_ms - before.time_ms, 0)
        config = self.config
        if (
            before.qr != after.qr
            and elapsed_ms <= config.qr_chip_window_s * 1000
            and km >= config.qr_chip_km_min
        ):
            rule = Rule.QR_AND_CHIP
        elif km >= config.travel_km_min and km * HOUR_MS > config.speed_kmh_max * elapsed_ms:
            rule = Rule.IMPOSSIBLE_TRAVEL
        else:
            return []  # the common case: nothing to say, and nothing formatted to say it
        detail = f"{km:.1f} km in {elapsed_ms / 60_000:.0f} min"
        return [Finding(card, rule, (before.index, after.index), detail)]
