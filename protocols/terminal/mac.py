"""Message authentication for the terminal protocol.

MAC = the first 8 bytes of HMAC-SHA256(terminal key, message body). HMAC-SHA256 is in every
terminal SDK and HSM; 8 bytes is the width of ISO 8583's DE64 MAC, and a forger gets one
guess per request on a line we watch (each failure is counted and answered 63), far from the
2**64 guesses a blind forgery needs.
"""

from __future__ import annotations

import hashlib
import hmac

MAC_SIZE = 8
# 128-bit terminal keys: the size of a double-length 3DES key or an AES-128 key, which is
# what key-injection rigs for payment terminals handle.
KEY_SIZE = 16
ZERO_MAC = bytes(MAC_SIZE)


class MacKey:
    """A terminal key ready to sign and verify; keeps the keyed HMAC state to copy."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"terminal keys are {KEY_SIZE} bytes, got {len(key)}")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, body: bytes) -> bytes:
        h = self._base.copy()
        h.update(body)
        return h.digest()[:MAC_SIZE]

    def verify(self, body: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self.sign(body), mac)


def key_check_value(key: bytes) -> str:
    """Six hex digits that identify a key without revealing it (journal, logs, key ceremonies)."""
    return hmac.new(key, bytes(KEY_SIZE), hashlib.sha256).hexdigest()[:6].upper()
