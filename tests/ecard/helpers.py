"""QR codes the issuer would never mint (other keys, other levels, altered bytes), for tests."""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.ecard import PREFIX, BusinessType, QrClaims, decode_qr, encode_qr
from protocols.ecard.base45 import b45decode, b45encode


def claims_of(qr: bytes) -> QrClaims:
    return decode_qr(qr).claims


def resign(qr: bytes, private_key: bytes, **changes: int | bytes | BusinessType) -> bytes:
    """`qr` with some claims changed, signed again with `private_key` (32 raw bytes)."""
    claims = dataclasses.replace(claims_of(qr), **changes)  # type: ignore[arg-type]
    return encode_qr(claims, Ed25519PrivateKey.from_private_bytes(private_key))


def payload_of(qr: bytes) -> bytes:
    return b45decode(qr[len(PREFIX) :])


def text_of(payload: bytes) -> bytes:
    return PREFIX + b45encode(payload)


def flip(qr: bytes, offset: int, mask: int = 0x01) -> bytes:
    """`qr` with one bit of payload byte `offset` flipped: an altered, not re-signed, code."""
    payload = bytearray(payload_of(qr))
    payload[offset] ^= mask
    return text_of(bytes(payload))
