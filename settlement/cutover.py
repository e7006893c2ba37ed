"""When cycles close: pure functions of a time and the configuration, no clock read.

Daily: at `cutover` local time. Every N minutes: at multiples of N from local midnight,
and at midnight itself, so drills and tests line up with calendar days too. A cycle's
business date is the local date of the last millisecond before its cutover: with a 23:00
cutover, Monday 23:00 to Tuesday 23:00 is Tuesday's business.
"""

from __future__ import annotations

import datetime

from settlement.config import SettlementConfig

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


def next_cutover_ms(after_ms: int, config: SettlementConfig) -> int:
    """The first cutover strictly after `after_ms`."""
    offset_ms = config.utc_offset_minutes * MINUTE_MS
    local_ms = after_ms + offset_ms
    day_start = local_ms - local_ms % DAY_MS
    if config.cycle_minutes:
        period = config.cycle_minutes * MINUTE_MS
        candidate = day_start + ((local_ms - day_start) // period + 1) * period
        candidate = min(candidate, day_start + DAY_MS)
    else:
        candidate = day_start + config.cutover_minutes * MINUTE_MS
        if candidate <= local_ms:
            candidate += DAY_MS
    return candidate - offset_ms


def business_date(cutover_ms: int, config: SettlementConfig) -> datetime.date:
    local_ms = cutover_ms - 1 + config.utc_offset_minutes * MINUTE_MS
    return datetime.date(1970, 1, 1) + datetime.timedelta(days=local_ms // DAY_MS)
