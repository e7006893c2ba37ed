"""Configuration: what an operator may set, with the Shiyan defaults where one is known.

Loaded from a TOML file (`onecard run --config FILE`); every field has a default so the
embedded demo needs none. Money is integer fen.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from settlement.config import SettlementConfig
from switch.banks.config import BanksConfig, Iso8583Config
from switch.casework.config import CaseworkConfig
from switch.ecard.config import EcardConfig
from switch.errors import ConfigError
from switch.lifecycle.config import LifecycleConfig
from switch.misuse.config import MisuseConfig
from switch.store.config import StoreConfig

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
    # The service API (HTTP JSON for desks and partner systems, docs/service-api.md).
    api_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 7800


class SnapshotConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Records journalled since the last snapshot before the next is worth its cost. A
    # restart replays at most this many (~15 µs each: 500,000 is ~8 s, inside a 10 s
    # restart budget); each snapshot costs seconds of a core and a write of ~60 bytes per
    # card, compressed (docs/operations.md, "Snapshots"). 0: at every check.
    records: Annotated[int, msgspec.Meta(ge=0)] = 500_000
    # How often the switch looks at that count.
    check_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0


# The fare table used when the configuration names none: the demo's (switch/transit/tables).
DEFAULT_FARES = Path(__file__).parent / "transit" / "tables" / "shiyan.toml"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    engine: EngineConfig = EngineConfig()
    server: ServerConfig = ServerConfig()
    # Fare table file; a higher version than the journal's is activated at start and on
    # SIGHUP (docs/fares.md).
    fares: str = str(DEFAULT_FARES)
    # When the running switch writes snapshots of its caches (`[snapshots]`).
    snapshots: SnapshotConfig = SnapshotConfig()
    # The ISO 8583 listener for merchants and acquirers, and the partner banks behind it
    # (`[iso8583]`, `[banks]`: switch/banks/config.py, docs/iso8583.md).
    iso8583: Iso8583Config = Iso8583Config()
    banks: BanksConfig = BanksConfig()
    # The service API's card lifecycle, casework, misuse rules and store (`[lifecycle]`,
    # `[casework]`, `[misuse]`, `[store]`: switch/lifecycle, casework, misuse, store).
    lifecycle: LifecycleConfig = LifecycleConfig()
    casework: CaseworkConfig = CaseworkConfig()
    misuse: MisuseConfig = MisuseConfig()
    store: StoreConfig = StoreConfig()
    # Settlement cycles, files, reconciliation, subsidies (`[settlement]`: settlement/config.py,
    # docs/settlement.md).
    settlement: SettlementConfig = SettlementConfig()


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        return msgspec.convert(tomllib.loads(path.read_text()), Config)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
