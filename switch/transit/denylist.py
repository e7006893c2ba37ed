"""The deny-list gates hold: cards to refuse even when the link to the switch is down.

Every change of a card's blocking status bumps the version by one. A gate asks for the
changes since the version it holds (a delta) or, when it holds none or is too far behind,
for the whole list in pages. Entries travel as 9-byte card numbers packed back to back,
the most compact form a gate can search without decoding.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from switch.domain.model import CardStatus

CARD_BYTES = 9
# What one answer carries: 7,000 x 9 bytes = 63,000 bytes, inside one 64 KiB frame with room
# for the answer's other fields.
ENTRIES_PER_ANSWER = 7_000
# Changes kept for deltas. A gate further behind than this downloads the whole list again:
# 200,000 changes is months of loss reports for a city of Shiyan's size.
HISTORY_MAX = 200_000

# An issued card not yet activated is blocked too: an offline gate must not let a card
# through that its holder has not yet taken into use (switch/lifecycle).
BLOCKING_STATUSES = frozenset(
    {
        CardStatus.TEMPORARILY_LOST,
        CardStatus.LOST,
        CardStatus.CANCELLED,
        CardStatus.REPLACED,
        CardStatus.ISSUED,
    }
)


@dataclass(frozen=True)
class DenyListPage:
    version: int  # the version the gate holds after applying this page
    full: bool  # True: `added` replaces the gate's list (from `cursor` on)
    more: bool  # True: ask again (from `version`, or with the next cursor for a full list)
    added: bytes
    removed: bytes


class DenyList:
    def __init__(self) -> None:
        self.version = 0
        self.blocked: set[str] = set()
        self._history: deque[tuple[int, str, bool]] = deque(maxlen=HISTORY_MAX)
        self._sorted: tuple[int, list[str]] = (-1, [])  # full-list pages, per version

    def record_change(self, card: str, blocked: bool) -> None:
        """A card's status changed: every such change bumps the version (a gate told twice
        that a card is blocked loses nothing), except for a card that stays unblocked."""
        if not blocked and card not in self.blocked:
            return
        self._change(card, blocked)

    def set_blocked(self, card: str, blocked: bool) -> None:
        """Blocked or not for another reason (debt, issue): a change only if it is one."""
        if blocked != (card in self.blocked):
            self._change(card, blocked)

    def _change(self, card: str, blocked: bool) -> None:
        if blocked:
            self.blocked.add(card)
        else:
            self.blocked.discard(card)
        self.version += 1
        self._history.append((self.version, card, blocked))

    def page(self, since_version: int, cursor: str = "") -> DenyListPage:
        oldest = self._history[0][0] if self._history else self.version + 1
        if since_version <= 0 or since_version < oldest - 1 or since_version > self.version:
            return self._full_page(cursor)
        added: dict[str, None] = {}
        removed: dict[str, None] = {}
        version = since_version
        for change_version, card, blocked in self._history:
            if change_version <= since_version:
                continue
            if len(added) + len(removed) >= ENTRIES_PER_ANSWER:
                break
            (added if blocked else removed)[card] = None
            (removed if blocked else added).pop(card, None)
            version = change_version
        return DenyListPage(
            version,
            full=False,
            more=version < self.version,
            added=_pack(added),
            removed=_pack(removed),
        )

    def _full_page(self, cursor: str) -> DenyListPage:
        if self._sorted[0] != self.version:
            self._sorted = (self.version, sorted(self.blocked))
        cards = self._sorted[1]
        start = bisect.bisect_right(cards, cursor)
        page = cards[start : start + ENTRIES_PER_ANSWER]
        return DenyListPage(
            self.version,
            full=True,
            more=start + len(page) < len(cards),
            added=_pack(page),
            removed=b"",
        )


def _pack(cards: Iterable[str]) -> bytes:
    return "".join(cards).encode("ascii")


def unpack(data: bytes) -> list[str]:
    return [data[i : i + CARD_BYTES].decode("ascii") for i in range(0, len(data), CARD_BYTES)]
