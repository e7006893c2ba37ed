"""Issuance: what the e-card app service asks of us, as plain functions.

`mint_qr()` is the call behind "show my QR code": the app service asks for a payload for a
holder's card and business type and displays it (refreshing it before it expires). Today the
command line calls it (`onecard qr mint`); the HTTP service API of a later issue will call
the same function, so everything it decides lives here, not in the callers.

`bind()` makes the record that creates (or replaces) a card's e-card, and `rotation()` the
records that bring in a new signing key and retire the previous ones. All of these take the
time as an argument and touch nothing but what they are given.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.ecard import NONCE_SIZE, TOKEN_SIZE, BusinessType, QrClaims, encode_qr
from switch.ecard.records import EcardBound, QrKeyActivated, QrKeyRetired
from switch.ecard.scan import LEVEL_ALLOWS
from switch.ecard.state import EcardLevel, EcardState
from switch.errors import EcardError


def mint_qr(
    state: EcardState,
    signing_keys: Mapping[int, bytes],
    card: str,
    business: BusinessType,
    now_ms: int,
    *,
    validity_s: int | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """A fresh QR payload (its ASCII text) for `card`'s e-card, signed with the signing key
    in force at `now_ms`. EcardError when the card has no e-card, its level does not allow
    `business`, or no usable signing key is held.

    The card's status is not checked here: the switch decides every scan on the physical
    card's state at that moment, and a code minted just before a loss report is refused."""
    binding = state.by_card.get(card)
    if binding is None:
        raise EcardError(f"card {card} has no e-card")
    if business not in LEVEL_ALLOWS[binding.level]:
        raise EcardError(
            f"card {card}: a level-{binding.level:d} e-card cannot show a "
            f"{business.name.lower()} code"
        )
    key = state.keys.signing_key(now_ms, signing_keys)
    if key is None:
        raise EcardError("no QR signing key in force whose private key is held")
    claims = QrClaims(
        business,
        key.key_id,
        binding.token,
        secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce,
        now_ms,
        state.config.qr_validity_s if validity_s is None else validity_s,
    )
    return encode_qr(claims, Ed25519PrivateKey.from_private_bytes(signing_keys[key.key_id]))


def new_token(state: EcardState) -> bytes:
    """A random card token no e-card holds. Random, not derived from the card or the
    holder: a QR code shown to a shop must reveal neither."""
    while True:
        token = secrets.token_bytes(TOKEN_SIZE)
        if token not in state.by_token:
            return token


def bind(state: EcardState, card: str, level: EcardLevel, now_ms: int) -> EcardBound:
    """The record that gives `card` an e-card with a new token (replacing any earlier)."""
    return EcardBound(now_ms, card, new_token(state), int(level))


def rotation(
    state: EcardState, key_id: int, public_key: bytes, now_ms: int, retire_after_ms: int
) -> list[QrKeyActivated | QrKeyRetired]:
    """Records that make `key_id` the signing key from `now_ms` and retire every other
    key not yet retired at `now_ms + retire_after_ms` (codes they signed stay good until
    then)."""
    if state.keys.get(key_id) is not None:
        raise EcardError(f"QR key {key_id} exists already")
    records: list[QrKeyActivated | QrKeyRetired] = [
        QrKeyActivated(now_ms, key_id, public_key, now_ms)
    ]
    records.extend(
        QrKeyRetired(now_ms, key.key_id, now_ms + retire_after_ms)
        for key in sorted(state.keys.keys.values(), key=lambda key: key.key_id)
        if key.retire_at_ms is None
    )
    return records
