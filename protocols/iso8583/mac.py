"""The MAC of an ISO 8583 message (DE64, or DE128 when a secondary bitmap is present).

MAC = the first 8 bytes of HMAC-SHA256(key, every byte of the message before the MAC
field): MTI, bitmaps and fields, as sent. The MAC field is always the message's last field
(the highest bit set), so "before the MAC" is "all but the last 8 bytes". It is the
terminal protocol's MAC (protocols.terminal.mac) over different bytes: the same 16-byte
per-terminal keys serve both channels, and the same per-bank keys the bank links.
"""

from __future__ import annotations

from protocols.terminal.mac import KEY_SIZE, MAC_SIZE, ZERO_MAC, MacKey

__all__ = ["KEY_SIZE", "MAC_SIZE", "ZERO_MAC", "MacKey", "mac_field", "sign", "verify"]


def mac_field(has_secondary_bitmap: bool) -> str:
    """Which field carries the MAC: DE128 when fields 65-128 are in use, else DE64."""
    return "128" if has_secondary_bitmap else "64"


def sign(key: MacKey, message_without_mac: bytes) -> bytes:
    return key.sign(message_without_mac)


def verify(key: MacKey, message: bytes) -> bool:
    return key.verify(message[:-MAC_SIZE], message[-MAC_SIZE:])
