"""The terminal channel on trio: the same codec and Switch.process_reads over trio streams.

One task per connection: read, hand the read to the batch, wait until the journal group
holding it is durable, send the answers with one send_all. The batch (TrioBatch) decides
the reads of every connection that trio woke together as one engine pass and one journal
append, as the asyncio adapter's LoopBatch does. Shutdown cancels only the reads, so a
request already decided still gets its answer.
"""

from __future__ import annotations

import functools
import logging

import anyio
import anyio.abc
import trio

from protocols.errors import LocalProtocolError
from protocols.terminal.codec import RejectedFrame, RequestFrame, ServerCodec
from switch.core import CONNECTIONS_MAX, LINGER_SECONDS_MAX, RECEIVE_BYTES, Switch
from switch.ops.logs import correlate

log = logging.getLogger("onecard.server")


Frames = list[RequestFrame | RejectedFrame]


class _Decided:
    """One read's place in a batch: its answers and the journal position they wait for."""

    __slots__ = ("event", "out", "position")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.out = b""
        self.position = 0


class TrioBatch:
    """The reads that arrive together, from every connection, decided as one batch.

    A connection task hands in its read and waits. The batch's own task, woken by the
    first read, runs in trio's next round of tasks, after every connection the same
    wake-up made runnable has handed in its read. Unlike LoopBatch it does not hold reads
    back while a journal group is being written: on trio that cost more than it saved
    (at 10,000 taps/s, p50 2.1 -> 2.4 ms; deciding at once, 2.1 -> 1.4 ms and 114 -> 100
    us of CPU a request against no batch: docs/performance.md, "Sixth round")."""

    def __init__(self, switch: Switch) -> None:
        self._switch = switch
        self._reads: list[Frames] = []
        self._decided: list[_Decided] = []
        self._arrived = trio.Event()

    async def decide(self, frames: Frames) -> tuple[bytes, int]:
        """The answers to one read and the journal position they must wait for."""
        decided = _Decided()
        self._reads.append(frames)
        self._decided.append(decided)
        self._arrived.set()
        await decided.event.wait()
        return decided.out, decided.position

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            # A fresh event with the reads taken, no await between: whatever is handed in
            # from here on sets it, so a batch is never empty.
            self._arrived = trio.Event()
            reads, decided = self._reads, self._decided
            self._reads, self._decided = [], []
            outs, position = self._switch.process_reads(reads)
            for slot, out in zip(decided, outs, strict=True):
                slot.out, slot.position = out, position
                slot.event.set()


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


async def _handle(
    switch: Switch, stream: trio.SocketStream, reads: _Reads, batch: TrioBatch
) -> None:
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
            out, position = await batch.decide(frames)
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
    batch = TrioBatch(switch)
    async with trio.open_nursery() as batching:
        batching.start_soon(batch.run)
        async with trio.open_nursery() as handlers:

            async def handle(stream: trio.SocketStream) -> None:
                await _handle(switch, stream, reads, batch)

            async with trio.open_nursery() as accepting:
                await accepting.start(
                    functools.partial(
                        trio.serve_listeners, handle, listeners, handler_nursery=handlers
                    )
                )
                bound_port: int = listeners[0].socket.getsockname()[1]
                log.info("terminal channel on %s:%d (trio)", host, bound_port)
                task_status.started(bound_port)
                await stop.wait()
                accepting.cancel_scope.cancel()
            reads.stop()
        # Every connection has had its answers: nothing is waiting on the batch.
        batching.cancel_scope.cancel()
