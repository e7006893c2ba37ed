"""Journal records of the e-card: which QR keys the switch accepts, which e-card is whose.

They import nothing from the switch, so switch.journal.records can include them in its
union without an import cycle.
"""

from __future__ import annotations

import msgspec


class QrKeyActivated(msgspec.Struct, tag="qr_key", array_like=True, frozen=True):
    """A QR signing key's public half: the switch accepts codes signed with it from now on.

    active_from_ms is when the issuer starts signing with it (the newest active key signs);
    the switch accepts it as soon as the record is applied, so codes minted right at the
    switch-over never meet a switch that does not know their key.
    """

    time_ms: int
    key_id: int
    public_key: bytes  # 32-byte raw Ed25519 public key
    active_from_ms: int


class QrKeyRetired(msgspec.Struct, tag="qr_key_retired", array_like=True, frozen=True):
    """From `retire_at_ms` on, codes signed with `key_id` are refused (82)."""

    time_ms: int
    key_id: int
    retire_at_ms: int


class EcardBound(msgspec.Struct, tag="ecard", array_like=True, frozen=True):
    """The e-card of physical card `card`, shown as QR codes carrying `token`.

    Binding again (a new phone, a new level) replaces the previous binding of the card:
    codes carrying the old token are refused from then on.
    """

    time_ms: int
    card: str
    token: bytes  # protocols.ecard.TOKEN_SIZE random bytes: never derived from the holder
    level: int  # switch.ecard.state.EcardLevel


class EcardUnbound(msgspec.Struct, tag="ecard_unbound", array_like=True, frozen=True):
    time_ms: int
    card: str
    reason: str


EcardRecord = QrKeyActivated | QrKeyRetired | EcardBound | EcardUnbound
# For isinstance(): which journal records switch.ecard.state applies.
ECARD_RECORDS = (QrKeyActivated, QrKeyRetired, EcardBound, EcardUnbound)
