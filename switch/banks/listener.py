"""The ISO 8583 listener for merchants and acquirers, on anyio streams (asyncio, uvloop or
trio alike).

One task per connection reads, hands every complete message of the read to the core as one
batch, and lets the answers come back through the connection's outbox once durable; a
second task writes them. Answers to requests waiting on a bank arrive later, in whatever
order the banks answer: merchants match them by DE11/DE41 (docs/iso8583.md section 3).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from protocols.errors import LocalProtocolError
from protocols.iso8583.codec import IsoCodec
from switch.core import CONNECTIONS_MAX, IN_FLIGHT_MAX, LINGER_SECONDS_MAX, RECEIVE_BYTES

if TYPE_CHECKING:
    from switch.banks.runtime import PaymentsRuntime

log = logging.getLogger("onecard.iso8583")


class Connection:
    """A merchant connection's outbox; the core delivers answers here once durable."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[bytes](float("inf"))
        self.in_flight = 0
        self.room = anyio.Event()

    def deliver(self, data: bytes) -> None:
        self.in_flight -= 1
        self.room.set()
        # A peer that left loses the answer; the decision is durable and a retransmission
        # gets it again.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.send.send_nowait(data)


async def _write(stream: anyio.abc.ByteStream, connection: Connection) -> None:
    async with connection.receive:
        try:
            async for data in connection.receive:
                await stream.send(data)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the peer left; what it was owed is durable, and a retry gets it


class _Reads:
    """The cancel scopes of reads in progress, so a stop can end every read at once."""

    def __init__(self) -> None:
        self.scopes: set[anyio.CancelScope] = set()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        for scope in self.scopes:
            scope.cancel()


async def _handle(runtime: PaymentsRuntime, stream: anyio.abc.SocketStream, reads: _Reads) -> None:
    statistics = runtime.acquirer.statistics
    if statistics.connections_open >= CONNECTIONS_MAX:
        await stream.aclose()
        return
    statistics.connections_open += 1
    connection = Connection()
    codec = IsoCodec()
    clock = runtime.switch.clock
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_write, stream, connection)
            try:
                with anyio.CancelScope() as reading:
                    reads.scopes.add(reading)
                    if reads.stopped:
                        reading.cancel()
                    while not codec.failed:
                        while connection.in_flight >= IN_FLIGHT_MAX:
                            connection.room = anyio.Event()
                            await connection.room.wait()
                        data = await stream.receive(RECEIVE_BYTES)
                        try:
                            codec.receive_data(data)
                        except LocalProtocolError:
                            break
                        messages = codec.next_messages()
                        if messages:
                            connection.in_flight += len(messages)
                            runtime.dispatch(
                                runtime.acquirer.requests(messages, connection, clock())
                            )
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                group.cancel_scope.cancel()  # the peer left: its answers have nowhere to go
                return
            finally:
                reads.scopes.discard(reading)
            # A framing error or a stop: answer what was decided, then close.
            with anyio.move_on_after(LINGER_SECONDS_MAX):
                while connection.in_flight > 0:
                    connection.room = anyio.Event()
                    await connection.room.wait()
            connection.send.close()
    finally:
        statistics.connections_open -= 1
        with anyio.CancelScope(shield=True):
            await stream.aclose()


async def serve_listener(
    runtime: PaymentsRuntime,
    host: str,
    port: int,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    log.info("ISO 8583 channel on %s:%d", host, bound)
    reads = _Reads()
    async with anyio.create_task_group() as handlers:

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await _handle(runtime, stream, reads)

        async with anyio.create_task_group() as accepting:
            accepting.start_soon(listener.serve, handle, handlers)
            task_status.started(bound)
            await stop.wait()
            accepting.cancel_scope.cancel()
        await listener.aclose()
        reads.stop()  # handlers answer what they decided, then close
