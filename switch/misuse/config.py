"""Misuse-rule settings (`[misuse]` in the TOML configuration)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from switch.misuse.places import DEFAULT_PLACES


class MisuseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Impossible travel: two uses of one card whose distance over the time between them
    # needs more than this speed. 120 km/h is beyond any bus or metro in the city and the
    # expressway between its districts, so honest travel never reaches it.
    speed_kmh_max: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    # Closer than this, positions and clocks are too rough to call any speed impossible.
    travel_km_min: Annotated[float, msgspec.Meta(ge=0)] = 3.0
    # QR and chip: a scan of the e-card and a tap of the physical card within this window,
    # this far apart, suggest the physical card is in someone else's hands.
    qr_chip_window_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 600
    qr_chip_km_min: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    # The places table (switch/misuse/places.py).
    places: str = str(DEFAULT_PLACES)
