"""The QR verification keys the switch knows, by key id.

The issuer (the e-card app service) holds the private keys; the switch needs only the
public halves, which reach it in QrKeyActivated records. A key is accepted from the moment
its record is applied until its retirement time.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from switch.ecard.records import QrKeyActivated, QrKeyRetired
from switch.errors import StateError

PUBLIC_KEY_SIZE = 32


@dataclass
class QrKey:
    key_id: int
    public_key: Ed25519PublicKey
    public_bytes: bytes
    active_from_ms: int
    retire_at_ms: int | None = None

    def retired_at(self, now_ms: int) -> bool:
        return self.retire_at_ms is not None and now_ms >= self.retire_at_ms


class KeyRing:
    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: dict[int, QrKey] = {}

    def activate(self, record: QrKeyActivated) -> None:
        if record.key_id in self.keys:
            raise StateError(f"QR key {record.key_id} activated twice")
        if len(record.public_key) != PUBLIC_KEY_SIZE:
            raise StateError(f"QR key {record.key_id}: public key is not {PUBLIC_KEY_SIZE} bytes")
        self.keys[record.key_id] = QrKey(
            record.key_id,
            Ed25519PublicKey.from_public_bytes(record.public_key),
            record.public_key,
            record.active_from_ms,
        )

    def retire(self, record: QrKeyRetired) -> None:
        key = self.keys.get(record.key_id)
        if key is None:
            raise StateError(f"retirement of unknown QR key {record.key_id}")
        key.retire_at_ms = record.retire_at_ms

    def get(self, key_id: int) -> QrKey | None:
        return self.keys.get(key_id)

    def signing_key(self, now_ms: int, available: Container[int]) -> QrKey | None:
        """The key the issuer signs with at `now_ms`: the most recently activated one that
        is in force and whose private half it holds."""
        usable = [
            key
            for key in self.keys.values()
            if key.active_from_ms <= now_ms
            and not key.retired_at(now_ms)
            and key.key_id in available
        ]
        return max(usable, key=lambda key: (key.active_from_ms, key.key_id), default=None)

    def next_key_id(self) -> int:
        return max(self.keys, default=0) + 1
