"""Configuration: what an operator may set, with the Shiyan defaults where one is known.

Loaded from a TOML file (`onecard run --config FILE`); every field has a default so the
embedded demo needs none. Money is integer fen.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from switch.ecard.config import EcardConfig
from switch.errors import ConfigError

PositiveFen = Annotated[int, msgspec.Meta(gt=0)]


class EngineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Transit purse ceiling (facts.md: Shanghai caps the purse at ¥200; chip purses hold a
    # 4-byte value). Enforced when a card is issued or credited.
    purse_cap_fen: PositiveFen = 20_000
    # Offline fares a purse may owe before the card goes on the deny-list (and online taps
    # are refused 51): one ride's worth, so one missed top-up does not strand a passenger.
    purse_debt_limit_fen: Annotated[int, msgspec.Meta(ge=0)] = 500
    # Largest single purchase from the purse; above it the answer is 61.
    purchase_amount_max_fen: PositiveFen = 20_000
    # How many of its most recent sequence numbers a terminal may retry or reverse. A gate
    # keeps at most a few dozen requests in flight, so 1024 covers any honest retry; older
    # numbers are refused (94) so money can never move twice through a forgotten seq.
    idempotency_window: Annotated[int, msgspec.Meta(ge=16, le=1_000_000)] = 1024
    # E-card QR codes: validity, clock skew, key retirement grace (`[engine.ecard]`).
    ecard: EcardConfig = EcardConfig()


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 7700
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9700
    loop: str = "uvloop"  # uvloop | asyncio | trio


# The fare table used when the configuration names none: the demo's (switch/transit/tables).
DEFAULT_FARES = Path(__file__).parent / "transit" / "tables" / "shiyan.toml"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    engine: EngineConfig = EngineConfig()
    server: ServerConfig = ServerConfig()
    # Fare table file; a higher version than the journal's is activated at start and on
    # SIGHUP (docs/fares.md).
    fares: str = str(DEFAULT_FARES)


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        return msgspec.convert(tomllib.loads(path.read_text()), Config)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
