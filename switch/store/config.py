"""Store settings (`[store]` in the TOML configuration)."""

from __future__ import annotations

from typing import Annotated

import msgspec


class StoreConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # PostgreSQL connection string (postgresql://user@host:port/db); empty: the embedded
    # store in the data directory, which needs no server.
    dsn: str = ""
    # Journal records the projector reads and COPYs per transaction. 5,000 decisions are
    # ~1 MB of rows: one COPY of that size takes a few milliseconds and keeps the lag short
    # while a backlog is caught up in few transactions.
    projection_batch_records: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5_000
    # How long a query waits for the projection to catch up with the journal before it is
    # answered 503: the projection normally lags by one batch, milliseconds.
    projection_wait_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    # Connections in the pool: the API's queries and the projector's transactions.
    pool_size: Annotated[int, msgspec.Meta(ge=2, le=64)] = 4
