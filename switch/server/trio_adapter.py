"""The terminal channel on trio: the same codec and Switch.process over trio streams.

One task per connection: read, decide the whole read as a batch, wait until the journal
group holding it is durable, send the answers with one send_all. Shutdown cancels only the
reads, so a request already decided still gets its answer.
"""

from __future__ import annotations

import functools
import logging

import anyio
import anyio.abc
import trio

from protocols.errors import LocalProtocolError
from protocols.terminal.codec import RejectedFrame, ServerCodec
from switch.core import CONNECTIONS_MAX, LINGER_SECONDS_MAX, RECEIVE_BYTES, Switch
from switch.ops.logs import correlate

log = logging.getLogger("onecard.server")


class _Reads:
    """The cancel scopes of reads in progress, so shutdown can stop reading everywhere."""

    def __init__(self) -> None:
        self.scopes: set[trio.CancelScope] = set()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        for scope in self.scopes:
            scope.cancel()


async def _linger(stream: trio.SocketStream) -> None:
    """A graceful stop's close: FIN after the last answer, then read and drop until the peer
    closes too, so the kernel never answers unread requests with RST (which can destroy
    answers still in flight)."""
    with trio.move_on_after(LINGER_SECONDS_MAX):
        await stream.send_eof()
        while await stream.receive_some(RECEIVE_BYTES):
            pass


async def _handle(switch: Switch, stream: trio.SocketStream, reads: _Reads) -> None:
    stats = switch.stats
    if stats.connections_open >= CONNECTIONS_MAX:
        stats.connections_refused_total += 1
        await stream.aclose()
        return
    stats.connections_open += 1
    stats.connections_accepted_total += 1
    connection_id = stats.connections_accepted_total
    codec = ServerCodec()
    try:
        while True:
            data = b""
            with trio.CancelScope() as read_scope:
                if reads.stopped:
                    read_scope.cancel()
                reads.scopes.add(read_scope)
                try:
                    data = await stream.receive_some(RECEIVE_BYTES)
                finally:
                    reads.scopes.discard(read_scope)
            if not data:
                if reads.stopped:
                    await _linger(stream)
                return
            received = trio.current_time()
            try:
                codec.receive_data(data)
            except LocalProtocolError:
                return
            frames = codec.next_frames()
            if not frames:
                continue
            out, position = switch.process(frames)
            await switch.journal.wait_durable(position)
            await stream.send_all(out)
            stats.request_seconds.observe(trio.current_time() - received, len(frames))
            last = frames[-1]
            if type(last) is RejectedFrame and last.error.fatal:
                stats.connections_closed_for_errors_total += 1
                log.warning(
                    "closing a connection whose bytes cannot be framed: %s",
                    last.error,
                    extra=correlate(connection=connection_id, seq=last.seq),
                )
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        stats.connections_open -= 1
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def serve_trio(
    switch: Switch,
    host: str,
    port: int,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    reads = _Reads()
    async with trio.open_nursery() as handlers:

        async def handle(stream: trio.SocketStream) -> None:
            await _handle(switch, stream, reads)

        async with trio.open_nursery() as accepting:
            await accepting.start(
                functools.partial(trio.serve_listeners, handle, listeners, handler_nursery=handlers)
            )
            bound_port: int = listeners[0].socket.getsockname()[1]
            log.info("terminal channel on %s:%d (trio)", host, bound_port)
            task_status.started(bound_port)
            await stop.wait()
            accepting.cancel_scope.cancel()
        reads.stop()
