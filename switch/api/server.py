"""Serving the application with hypercorn, on asyncio (uvloop) or trio alike.

The listening socket is made here and handed to hypercorn, so the port is known (port 0:
any free one, for tests) before anyone is told the API is up. A stop is graceful: hypercorn
stops accepting, lets requests in progress finish (they wait for the journal, which is still
running) and returns.
"""

from __future__ import annotations

import logging
import socket
from functools import partial

import anyio
import anyio.abc
import sniffio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app
from starlette.applications import Starlette

from switch.ops.logs import RequestIds

log = logging.getLogger("onecard.api")

# Connections waiting to be accepted: the API serves tens of desks and partner systems.
BACKLOG = 128
# How long a stop waits for requests in progress: each waits at most for one journal group.
GRACEFUL_TIMEOUT_S = 5.0
# Keep-alive of idle connections: partner systems reuse theirs between calls.
KEEP_ALIVE_S = 30


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def _config() -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None  # paths carry card numbers and tokens: our own metrics suffice
    config.errorlog = logging.getLogger("onecard.api.server")
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.include_server_header = False
    return config


async def serve_api(
    app: Starlette,
    host: str,
    port: int,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until `stop` is set; reports the bound port once listening."""
    sock = listen(host, port)
    bound: int = sock.getsockname()[1]
    sockets = Sockets([], [sock], [])
    config = _config()
    # Starlette is an ASGI 3 application; hypercorn's type names its scopes more narrowly.
    # RequestIds: every request's log lines carry its X-Request-Id (switch/ops/logs.py).
    wrapped = wrap_app(RequestIds(app), config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio.run import worker_serve  # noqa: PLC0415 - the loop's own
    else:
        from hypercorn.asyncio.run import worker_serve  # type: ignore[assignment] # noqa: PLC0415
    async with anyio.create_task_group() as group:
        group.start_soon(
            partial(worker_serve, wrapped, config, sockets=sockets, shutdown_trigger=stop.wait)
        )
        task_status.started(bound)
    log.info("service API stopped")
