"""The switch service as a whole: structured concurrency over the journal writer, the
terminal channel and the metrics endpoint.

    run_service
    └── task group
        ├── journal writer (Journal.run)              until cancelled after the drain
        └── serving task group
            └── terminal channel (asyncio Protocol on uvloop, or trio streams)
                                                          until `stop`, then drains

A failure anywhere (a failed fsync above all) cancels everything and propagates: the
process stops rather than answer from state it cannot make durable.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import anyio
import anyio.abc
import sniffio

from switch.config import Config
from switch.core import Switch
from switch.errors import ConfigError
from switch.metrics import MetricsServer
from switch.server.asyncio_adapter import serve_asyncio
from switch.server.trio_adapter import serve_trio

log = logging.getLogger("onecard.service")


async def run_service(
    switch: Switch,
    config: Config,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[tuple[int, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `stop` is set; reports (terminal port, metrics port) once listening."""
    server_config = config.server
    metrics_server = MetricsServer(switch, server_config.host, server_config.metrics_port)
    metrics_port = metrics_server.port
    try:
        async with anyio.create_task_group() as everything:
            everything.start_soon(switch.journal.run, name="journal writer")
            async with anyio.create_task_group() as serving:
                trio = sniffio.current_async_library() == "trio"
                serve = serve_trio if trio else serve_asyncio
                port = await serving.start(
                    serve, switch, server_config.host, server_config.port, stop
                )
                task_status.started((port, metrics_port))
            everything.cancel_scope.cancel()
    finally:
        metrics_server.stop()
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


async def main(switch: Switch, config: Config) -> None:
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
        port, metrics_port = await group.start(run_service, switch, config, stop)
        # Tests and scripts wait for this exact line to know the switch is serving.
        print(
            f"onecard: serving terminals on {config.server.host}:{port}, "
            f"metrics on http://{config.server.host}:{metrics_port}/metrics",
            flush=True,
            file=sys.stdout,
        )


def run(switch: Switch, config: Config) -> None:
    loop = config.server.loop
    if loop == "trio":
        anyio.run(main, switch, config, backend="trio")
    else:
        anyio.run(
            main,
            switch,
            config,
            backend="asyncio",
            backend_options={"use_uvloop": loop == "uvloop"},
        )
