"""Lifecycle settings an operator may change (`[lifecycle]` in the TOML configuration)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from switch.lifecycle.pins import COST_LOG2_DEFAULT

# A temporary loss report lifts itself after this many days at most: facts.md lists 5 to 15
# across cities; a month is beyond any of them and bounds what a typo can do.
TEMPORARY_LOSS_DAYS_MAX = 31
# scrypt cost bounds: 2**10 is for tests only; 2**20 (1 GiB at r = 8) is the most the switch
# could afford on its 2 cores without starving the terminal channel.
PIN_COST_LOG2_MIN = 10
PIN_COST_LOG2_MAX = 20


class LifecycleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Days after which a temporary loss report lifts itself. Shiyan publishes no figure;
    # 15 is the value most cities use (facts.md: Shanghai 5, Xi'an/Wuxi 7, elsewhere 15).
    temporary_loss_days: Annotated[int, msgspec.Meta(ge=1, le=TEMPORARY_LOSS_DAYS_MAX)] = 15
    # Whether a formal loss report may be lifted at the desk, or only lead to replacement
    # (facts.md: some cities refuse). Shiyan's counters lift them with the holder present.
    formal_loss_liftable: bool = True
    # scrypt cost of PIN hashes (N = 2**pin_cost_log2).
    pin_cost_log2: Annotated[int, msgspec.Meta(ge=PIN_COST_LOG2_MIN, le=PIN_COST_LOG2_MAX)] = (
        COST_LOG2_DEFAULT
    )
    # How often the switch looks for temporary loss reports that have run out. A minute:
    # a card stays refused at most this long past its expiry.
    expiry_sweep_s: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
