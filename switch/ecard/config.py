"""E-card settings an operator may change (`[engine.ecard]` in the TOML configuration)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from protocols.ecard import VALIDITY_S_MAX

# Issuer and switch are servers on NTP: their clocks agree to well under a second. Two
# minutes is the most we allow an operator to widen the window by, because every second of
# skew is a second longer that the switch must remember each used nonce.
CLOCK_SKEW_S_MAX = 120
# A key cannot be retired later than this after its successor takes over: a week covers any
# planned changeover, and a forgotten old key should not stay valid for ever.
RETIRE_GRACE_S_MAX = 7 * 24 * 3600


class EcardConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # How long a minted QR code is valid. Apps seen in the field refresh it about every
    # 60 s (facts.md); at least 10 s so a code can be shown and scanned at all.
    qr_validity_s: Annotated[int, msgspec.Meta(ge=10, le=VALIDITY_S_MAX)] = 60
    # How far the issuer's clock may be from the switch's: a code is accepted from
    # issue - skew to expiry + skew.
    qr_clock_skew_s: Annotated[int, msgspec.Meta(ge=0, le=CLOCK_SKEW_S_MAX)] = 15
    # `onecard qr rotate`: how long the previous key stays accepted after a new one takes
    # over. Ten minutes covers every code minted before the switch-over (validity + skew)
    # with room for an issuer that picks up the new key late.
    key_retire_grace_s: Annotated[int, msgspec.Meta(ge=0, le=RETIRE_GRACE_S_MAX)] = 600

    def __post_init__(self) -> None:
        if self.key_retire_grace_s < self.qr_validity_s + self.qr_clock_skew_s:
            raise ValueError(
                "key_retire_grace_s must cover qr_validity_s + qr_clock_skew_s, or codes "
                "minted just before a rotation would be refused as signed by a retired key"
            )

    @property
    def skew_ms(self) -> int:
        return self.qr_clock_skew_s * 1000
