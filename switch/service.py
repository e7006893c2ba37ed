"""The switch service as a whole: structured concurrency over the journal writer, the
terminal channel and the metrics endpoint.

    run_service
    └── task group
        ├── journal writer (Journal.run)              until cancelled after the drain
        ├── heartbeat (liveness, loop lag) and the drain watch (readiness off at stop)
        ├── settlement scheduler, when enabled: closes and settles a cycle at each cutover
        └── serving task group
            ├── terminal channel (asyncio Protocol on uvloop, or trio streams)
            └── ISO 8583 channel, when enabled: listener, bank links, bank timers
                                                          until `stop`, then drains

A failure anywhere (a failed fsync above all) cancels everything and propagates: the
process stops rather than answer from state it cannot make durable.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from pathlib import Path

import anyio
import anyio.abc
import sniffio

from settlement.cycle import settlement_directory
from settlement.scheduler import Scheduler
from switch.api.service import ApiService
from switch.banks.runtime import serve_iso8583
from switch.config import Config
from switch.core import Switch
from switch.errors import ConfigError
from switch.metrics import SwitchCollector
from switch.ops.gcpauses import GcPauses
from switch.ops.health import RecoverySummary, keep_beating
from switch.ops.server import OpsServer
from switch.server.asyncio_adapter import serve_asyncio
from switch.server.trio_adapter import serve_trio
from switch.snapshotter import SnapshotStatistics, snapshot_now, take_snapshots

log = logging.getLogger("onecard.service")

# How long a thread wanting the GIL waits for a busy holder to let go (Python: 5 ms).
# The journal writer thread needs it three times per group (see run()); 0.5 ms bounds what
# that adds to a durable answer, and costs nothing while no other thread is waiting.
GIL_SWITCH_INTERVAL_SECONDS = 0.0005


async def run_service(
    switch: Switch,
    config: Config,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[tuple[int, int]] = anyio.TASK_STATUS_IGNORED,
    api: ApiService | None = None,
    ops: OpsServer | None = None,
) -> None:
    """Serve until `stop` is set; reports (terminal port, metrics port) once listening.
    With `api`, the service API too, on its own port (`api.port` once listening).
    `ops`: the metrics and health endpoint, when the caller opened it before recovery
    (`onecard run`); otherwise the service opens its own and closes it at the end."""
    server_config = config.server
    owned = ops is None
    if ops is None:
        ops = OpsServer(server_config.host, server_config.metrics_port)
    health = ops.health
    recovery = switch.recovery
    health.recovered(
        RecoverySummary(
            recovery.records, recovery.segments, recovery.truncated_bytes, switch.recovery_seconds
        )
    )
    collector = SwitchCollector(switch)
    ops.registry.register(collector)
    pauses = GcPauses()
    collector.gc_pauses = pauses
    snapshots = SnapshotStatistics(switch.snapshot_position)
    collector.snapshots = snapshots
    if api is not None:
        ops.registry.register(api.collector())
    metrics_port = ops.port

    async def draining() -> None:
        await stop.wait()
        health.draining()

    try:
        with pauses.recording():
            async with anyio.create_task_group() as everything:
                everything.start_soon(switch.journal.run, name="journal writer")
                everything.start_soon(keep_beating, health, name="heartbeat")
                everything.start_soon(draining, name="drain watch")
                everything.start_soon(pauses.keep_young, name="gc freeze")
                everything.start_soon(
                    take_snapshots, switch, config.snapshots, snapshots, name="snapshots"
                )
                if config.settlement.enabled:  # cycles, files, subsidies (docs/settlement.md)
                    # Made here rather than by run_scheduler so the metrics can read its
                    # statistics (failures, duration, next cutover).
                    scheduler = Scheduler(switch, config.settlement)
                    collector.settlement = scheduler.statistics
                    collector.reconciliation = lambda: scheduler.open_exceptions or {}
                    log.info(
                        "settlement: files in %s, cutover %s",
                        settlement_directory(switch.journal.directory.parent, config.settlement),
                        config.settlement.cutover,
                    )
                    everything.start_soon(scheduler.run, name="settlement scheduler")
                async with anyio.create_task_group() as serving:
                    trio = sniffio.current_async_library() == "trio"
                    serve = serve_trio if trio else serve_asyncio
                    port = await serving.start(
                        serve, switch, server_config.host, server_config.port, stop
                    )
                    if config.iso8583.enabled:  # merchants and acquirers; the bank links
                        iso_port = await serving.start(serve_iso8583, switch, config, stop)
                        log.info("ISO 8583 channel on port %d", iso_port)
                    if api is not None:  # desks and partner systems (docs/service-api.md)
                        await serving.start(api.run, stop)
                    # Readiness waits for these links to sign on (switch/ops/health.py).
                    banks = switch.engine.payments.statistics.links_up
                    health.serving(banks if config.iso8583.enabled else {})
                    task_status.started((port, metrics_port))
                # Drained: the caches are exactly the durable journal. The next start then
                # replays nothing (switch/snapshot.py).
                snapshot_now(switch)
                everything.cancel_scope.cancel()
    finally:
        health.draining()  # after a failure too: not ready while the process ends
        if owned:
            ops.stop()
        switch.journal.close()
    log.info("stopped; journal durable at record %d", switch.journal.durable_position)


async def reload_fares(switch: Switch, path: Path) -> None:
    """SIGHUP: activate the fare file if it holds a newer version; a bad file changes
    nothing and says why."""
    try:
        activation = switch.fares_update(path, switch.clock())
    except ConfigError as exc:
        log.error("fare table not reloaded: %s", exc)
        return
    if activation is None:
        log.info("fare table %s: no newer version", path)
        return
    await switch.journal.wait_durable(switch.submit([activation]))
    log.info("fare table version %d activated from %s", activation.version, path)


async def main(switch: Switch, config: Config, ops: OpsServer | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    stop = anyio.Event()
    async with anyio.create_task_group() as group:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(
                signal.SIGINT, signal.SIGTERM, signal.SIGHUP
            ) as signals:
                async for received in signals:
                    if received == signal.SIGHUP:
                        await reload_fares(switch, Path(config.fares))
                        continue
                    log.info("%s: draining and stopping", signal.Signals(received).name)
                    stop.set()
                    return

        group.start_soon(on_signals)
        api = ApiService(switch, config)
        port, metrics_port = await group.start(
            functools.partial(run_service, api=api, ops=ops), switch, config, stop
        )
        # Tests and scripts wait for this exact line to know the switch is serving.
        print(
            f"onecard: serving terminals on {config.server.host}:{port}, "
            f"metrics on http://{config.server.host}:{metrics_port}/metrics, "
            f"service API on http://{config.server.host}:{api.port}",
            flush=True,
            file=sys.stdout,
        )
        if config.iso8583.enabled:
            iso_port = switch.engine.payments.statistics.listen_port
            print(f"onecard: ISO 8583 on {config.iso8583.host}:{iso_port}", flush=True)


def run(switch: Switch, config: Config, ops: OpsServer | None = None) -> None:
    """`ops`: the metrics and health endpoint opened before recovery (onecard run)."""
    loop = config.server.loop
    # The journal's writer thread needs the GIL three times per group (woken, after the
    # write, after the sync). Behind a busy event loop each time costs up to the switch
    # interval, 5 ms by default: up to 15 ms added to every durable answer under load.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    serve = functools.partial(main, ops=ops)
    if loop == "trio":
        anyio.run(serve, switch, config, backend="trio")
    else:
        anyio.run(
            serve,
            switch,
            config,
            backend="asyncio",
            backend_options={"use_uvloop": loop == "uvloop"},
        )
