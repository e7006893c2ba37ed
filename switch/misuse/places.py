"""Where terminals stand, by `line/station` (a metro gate, a bus stop), in degrees.

Bus validators move with their bus: only those that send their stop (sectional lines) have a
place. A terminal without a place takes part in no distance rule. The table is a TOML file:

    [places]
    "M/M00" = [32.6290, 110.7980]     # latitude, longitude
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from switch.errors import ConfigError

EARTH_RADIUS_KM = 6371.0
# The demo's places (metro network M and sectional line B8 in Shiyan's urban area).
DEFAULT_PLACES = Path(__file__).parent / "tables" / "shiyan-places.toml"

Position = tuple[float, float]


def load_places(path: Path) -> dict[str, Position]:
    try:
        document = tomllib.loads(path.read_text())
        places = {
            str(key): (float(value[0]), float(value[1]))
            for key, value in document.get("places", {}).items()
        }
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: unusable places table: {exc}") from exc
    for key, (latitude, longitude) in places.items():
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ConfigError(f"{path}: place {key} is not a latitude and longitude")
    return places


def distance_km(a: Position, b: Position) -> float:
    """Great-circle distance (haversine): exact enough for a city."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
