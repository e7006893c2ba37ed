"""Everything the engine keeps about e-cards; changed only by journal records.

An e-card is a binding, not a card: it points at its physical card and keeps no status or
accounts of its own, so the physical card's state (lost, cancelled, suspended) is the
e-card's state by construction ("same state, same functions", facts.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from protocols.ecard import TOKEN_SIZE
from switch.domain.model import Card
from switch.ecard.config import EcardConfig
from switch.ecard.keys import KeyRing
from switch.ecard.records import (
    EcardBound,
    EcardRecord,
    EcardUnbound,
    QrKeyActivated,
    QrKeyRetired,
)
from switch.ecard.replay import NonceStore
from switch.errors import StateError


class EcardLevel(enum.IntEnum):
    IDENTITY = 1  # identity and query only
    PAYMENT = 2  # a bank account is linked: payment enabled


class Binding:
    __slots__ = ("card", "level", "token")

    def __init__(self, card: str, token: bytes, level: EcardLevel) -> None:
        self.card = card
        self.token = token
        self.level = level


class EcardState:
    __slots__ = ("by_card", "by_token", "config", "keys", "nonces")

    def __init__(self, config: EcardConfig, nonces: NonceStore | None = None) -> None:
        self.config = config
        self.by_token: dict[bytes, Binding] = {}
        self.by_card: dict[str, Binding] = {}
        self.keys = KeyRing()
        self.nonces = nonces if nonces is not None else NonceStore()

    def apply(self, record: EcardRecord, cards: Mapping[str, Card]) -> None:
        if type(record) is QrKeyActivated:
            self.keys.activate(record)
        elif type(record) is QrKeyRetired:
            self.keys.retire(record)
        elif type(record) is EcardBound:
            self._bind(record, cards)
        elif type(record) is EcardUnbound:
            binding = self.by_card.pop(record.card, None)
            if binding is None:
                raise StateError(f"card {record.card} has no e-card to unbind")
            del self.by_token[binding.token]
        else:
            raise AssertionError(f"unhandled e-card record {type(record).__name__}")

    def _bind(self, record: EcardBound, cards: Mapping[str, Card]) -> None:
        if record.card not in cards:
            raise StateError(f"e-card bound to unknown card {record.card}")
        if len(record.token) != TOKEN_SIZE:
            raise StateError(f"e-card token of card {record.card} is not {TOKEN_SIZE} bytes")
        holder = self.by_token.get(record.token)
        if holder is not None and holder.card != record.card:
            raise StateError(f"e-card token of card {record.card} already belongs to another")
        previous = self.by_card.pop(record.card, None)
        if previous is not None:
            del self.by_token[previous.token]
        binding = Binding(record.card, record.token, EcardLevel(record.level))
        self.by_card[record.card] = binding
        self.by_token[record.token] = binding

    def record_scan(self, time_ms: int, nonce: bytes, forget_after_ms: int) -> None:
        """Apply a scan decision: time moves on, and a consumed nonce is remembered."""
        self.nonces.observe(time_ms)
        if forget_after_ms:
            self.nonces.remember(nonce, forget_after_ms)
