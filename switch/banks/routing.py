"""Which bank holds a card's financial account (regulation art. 5: cooperating banks).

In order: a configured card range naming the card (operators re-route ranges, e.g. cards
moved to another bank's host); else the card's own bank from its issue record, when that
bank has a link; else the default route; else no route (92). The table is sorted once, so
a lookup is a binary search.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import pairwise

from switch.banks.config import BanksConfig
from switch.errors import ConfigError


class Router:
    def __init__(self, config: BanksConfig) -> None:
        self._links = {link.id for link in config.links}
        ranges = sorted((r.low, r.high, r.bank) for r in config.ranges)
        for (_, high, _), (low, _, _) in pairwise(ranges):
            if low <= high:
                raise ConfigError(f"card ranges overlap at {low}")
        for low, high, bank in ranges:
            if low > high:
                raise ConfigError(f"card range {low}..{high} is empty")
            if bank not in self._links:
                raise ConfigError(f"card range {low}..{high} names bank {bank} with no link")
        if config.default_route and config.default_route not in self._links:
            raise ConfigError(f"default route {config.default_route} has no link")
        self._lows = [low for low, _, _ in ranges]
        self._ranges = ranges
        self._default = config.default_route

    def route(self, card: str, card_bank: str) -> str | None:
        """The bank for `card` (whose issue record names `card_bank`), or None."""
        index = bisect_right(self._lows, card) - 1
        if index >= 0:
            low, high, bank = self._ranges[index]
            if low <= card <= high:
                return bank
        if card_bank in self._links:
            return card_bank
        return self._default or None
