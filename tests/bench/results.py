"""A LoadResult for report tests: every figure zero or neutral but those a test names."""

from __future__ import annotations

from typing import Any

import msgspec

from bench.histogram import LatencySummary
from bench.spec import LoadResult

LATENCY = LatencySummary(1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, "")


def load_result(**figures: Any) -> LoadResult:
    fields: dict[str, object] = dict.fromkeys(LoadResult.__struct_fields__, 0)
    fields |= {
        "mode": "closed",
        "offered_rate_per_second": None,
        "measured_seconds": 10.0,
        "latency": LATENCY,
        "service": LATENCY,
        "lag": None,
        "schedule_kept": True,
        "codes": {},
        "server_cpu_seconds": None,
    }
    return msgspec.convert(fields | figures, LoadResult)
