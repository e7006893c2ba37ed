"""The service API put together, and run in the switch service's serving task group.

    ApiService.run
    └── background task group                      cancelled once the server has stopped
        ├── store work (the PostgreSQL projector; nothing for the embedded store)
        ├── misuse watcher (review flags from durable decisions; the rules themselves
        │   run in its follower process, switch/misuse/follower.py)
        ├── temporary-loss sweeper (lifts reports that have run out)
        └── serving task group
            └── hypercorn (Starlette app)           until `stop`, then drains

The store: PostgreSQL when `[store] dsn` is set and the loop is asyncio (asyncpg is
asyncio-only); otherwise the embedded store in the data directory. On trio with a dsn set,
the service says so in the log and uses the embedded store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import sniffio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from switch.api.app import ApiStatistics, build_app
from switch.api.auth import Tokens
from switch.api.operations import Operations, Secrets
from switch.api.server import serve_api
from switch.config import Config
from switch.core import Switch
from switch.keystore import KeyStore
from switch.misuse.places import load_places
from switch.misuse.watcher import MisuseWatcher
from switch.privacy.holders import HolderSealer
from switch.privacy.masking import install_log_guard
from switch.privacy.seal import Sealer
from switch.store.base import Store
from switch.store.embedded import EmbeddedStore

log = logging.getLogger("onecard.api")


class ApiService:
    def __init__(
        self,
        switch: Switch,
        config: Config,
        tokens: Tokens | None = None,
        *,
        background: bool = True,
    ) -> None:
        """background=False: no misuse watcher or expiry sweeper task; tests run
        `watcher.run` and call `operations.expire_losses()` themselves, deterministically."""
        install_log_guard()
        self.background = background
        self.switch = switch
        self.config = config
        self.data_dir: Path = switch.journal.directory.parent
        keys = KeyStore.load(self.data_dir)
        self.secrets = Secrets(
            HolderSealer(keys.holder_secret, Sealer(keys.data_keys)),
            Sealer(keys.data_keys),
            keys.pin_pepper,
        )
        self.tokens = tokens if tokens is not None else Tokens.load(self.data_dir)
        self.statistics = ApiStatistics()
        self.watcher = MisuseWatcher(switch, config.misuse, load_places(Path(config.misuse.places)))
        self.port = 0
        self.store: Store | None = None
        self.operations: Operations | None = None

    async def open_store(self) -> Store:
        store_config = self.config.store
        if store_config.dsn and sniffio.current_async_library() == "asyncio":
            from switch.store.postgres import PostgresStore  # noqa: PLC0415 - asyncio only

            return await PostgresStore.connect(store_config, self.switch.journal.directory)
        if store_config.dsn:
            log.warning(
                "store: PostgreSQL is configured but the loop is trio, and asyncpg runs on "
                "asyncio only: the PostgreSQL projection is DISABLED; using the embedded store"
            )
        return EmbeddedStore(self.switch.engine, self.data_dir)

    async def run(
        self,
        stop: anyio.Event,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        store = self.store = await self.open_store()
        operations = self.operations = Operations(
            self.switch, store, self.secrets, self.config.lifecycle, self.config.casework
        )
        app = build_app(operations, self.tokens, self.statistics)
        server = self.config.server
        try:
            async with anyio.create_task_group() as background:
                await background.start(store.run, self.switch.journal)
                if self.background:
                    await background.start(self.watcher.run)
                    background.start_soon(self._sweep_expiries)
                async with anyio.create_task_group() as serving:
                    self.port = await serving.start(
                        serve_api, app, server.host, server.api_port, stop
                    )
                    log.info(
                        "service API on http://%s:%d (store: %s)",
                        server.host,
                        self.port,
                        store.kind,
                    )
                    task_status.started(self.port)
                background.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    async def _sweep_expiries(self) -> None:
        assert self.operations is not None
        while True:
            lifted = await self.operations.expire_losses()
            if lifted:
                log.info("lifecycle: %d temporary loss reports ran out and were lifted", lifted)
            await anyio.sleep(self.config.lifecycle.expiry_sweep_s)

    def collector(self) -> Collector:
        return ApiCollector(self)


class ApiCollector(Collector):
    """Service API metrics: operation ids and status codes as labels, nothing else."""

    def __init__(self, service: ApiService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        answered = CounterMetricFamily(
            "onecard_api_requests",
            "Service API requests answered, by operation and HTTP status.",
            labels=["operation", "status"],
        )
        for (operation, status), count in sorted(dict(service.statistics.answered).items()):
            answered.add_metric([operation, str(status)], count)
        yield answered
        buckets, total = service.statistics.seconds.snapshot()
        yield HistogramMetricFamily(
            "onecard_api_request_duration_seconds",
            "Service API request time, including the wait for the journal.",
            buckets=buckets,
            sum_value=total,
        )
        engine = service.switch.engine
        yield CounterMetricFamily(
            "onecard_lifecycle_steps",
            "Card lifecycle steps journalled (replayed ones included).",
            value=engine.lifecycle.steps_total,
        )
        yield CounterMetricFamily(
            "onecard_personal_data_reads",
            "Reads of holders' personal data journalled (replayed ones included).",
            value=engine.audit.reads_total,
        )
        yield CounterMetricFamily(
            "onecard_review_flags_raised",
            "Misuse review flags raised since start.",
            value=service.watcher.flags_total,
        )
        yield CounterMetricFamily(
            "onecard_misuse_follower_restarts",
            "Times the misuse follower process failed and another was started.",
            value=service.watcher.restarts_total,
        )
        yield CounterMetricFamily(
            "onecard_misuse_skipped_records",
            "Journal records the misuse rules skipped unjudged: their follower kept failing.",
            value=service.watcher.skipped_records_total,
        )
        yield GaugeMetricFamily(
            "onecard_misuse_lag_records",
            "Durable journal records the misuse rules have not judged yet.",
            value=max(service.switch.journal.durable_position - service.watcher.next_index, 0),
        )
        yield GaugeMetricFamily(
            "onecard_review_flags_open",
            "Misuse review flags not yet resolved.",
            value=sum(1 for f in engine.casework.flags.values() if f.resolved is None),
        )
        store = service.store
        projected = getattr(store, "projected", None)
        if projected is not None:
            yield GaugeMetricFamily(
                "onecard_store_projection_lag_records",
                "Durable journal records not yet projected into PostgreSQL.",
                value=max(service.switch.journal.durable_position - projected, 0),
            )
