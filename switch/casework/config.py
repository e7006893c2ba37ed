"""Casework settings an operator may change (`[casework]` in the TOML configuration)."""

from __future__ import annotations

from typing import Annotated

import msgspec


class CaseworkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Days within which a complaint or report must be answered. The State Council's
    # petition rules (信访工作条例) give 15 days to accept and 60 to conclude; the one-card
    # service commits to an answer within 15.
    complaint_answer_days: Annotated[int, msgspec.Meta(ge=1, le=90)] = 15
