"""The terminal hot path on asyncio (uvloop in production).

`data_received` decodes every complete frame of the read and hands them to the loop's
batch; once per event-loop iteration the batch decides the frames of every connection
that was readable as one engine pass and one journal append, and the answers are written
once that group is durable: one write per connection per journal group, however many reads
the group covered. No task, future or per-request object beyond the decoded message.

Batching across connections is for open-loop traffic: gates send one request at a time,
so a read rarely carries more than one, but an iteration of a busy loop sees several
readable connections (3.6-3.9 at 10,000 taps/s), and deciding them together shares the
per-batch costs: at that rate 96 -> 90 µs of CPU per request and a third fewer journal
groups (docs/performance.md, "Third round"). While a journal group is being written the
batch goes on gathering, over as many iterations as the write takes, and is decided when
the group is durable: its answers could not have left earlier (LoopBatch.add).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import anyio
import anyio.abc

from protocols.errors import LocalProtocolError
from protocols.terminal.codec import RejectedFrame, RequestFrame, ServerCodec
from switch.core import CONNECTIONS_MAX, IN_FLIGHT_MAX, LINGER_SECONDS_MAX, Switch
from switch.ops.logs import correlate

log = logging.getLogger("onecard.server")

LINGER_POLL_SECONDS = 0.01
# Pending connections the kernel queues for us: a whole station's gates reconnecting at once
# after a network blip must not be refused.
LISTEN_BACKLOG = 4096

Frames = list[RequestFrame | RejectedFrame]


class LoopBatch:
    """The reads of one event-loop iteration, from every connection (or of every
    iteration while a journal group is being written): decided together after the loop
    has delivered all of that iteration's reads (call_soon runs after them), answered
    together when their journal group is durable, and written out with one write per
    connection."""

    __slots__ = (
        "_dirty",
        "_first_read",
        "_flush_scheduled",
        "_loop",
        "_protocols",
        "_reads",
        "_switch",
    )

    def __init__(self, switch: Switch, loop: asyncio.AbstractEventLoop) -> None:
        self._switch = switch
        self._loop = loop
        self._protocols: list[TerminalProtocol] = []
        self._reads: list[Frames] = []
        self._first_read = 0.0
        # Connections with answers in their outbox and a write to come.
        self._dirty: list[TerminalProtocol] = []
        self._flush_scheduled = False

    def add(self, protocol: TerminalProtocol, frames: Frames) -> None:
        if not self._reads:
            self._first_read = time.perf_counter()
            journal = self._switch.journal
            if journal.durable_position < journal.appended_position:
                # A group is on its way to the disk, and every answer decided now would
                # wait for it anyway (process_reads). Decided once it is durable instead,
                # everything read meanwhile makes one batch and one append: ~6% less CPU
                # a request and a third of the context switches at 30,000/s
                # (docs/performance.md, "Fifth round").
                journal.call_when_durable(journal.appended_position, self._decide_soon)
            else:
                self._loop.call_soon(self._decide)
        self._protocols.append(protocol)
        self._reads.append(frames)

    def _decide_soon(self) -> None:
        # Not at once: the durable group's answers are written first (their _flush is
        # already scheduled), then this batch is decided.
        self._loop.call_soon(self._decide)

    def _decide(self) -> None:
        protocols, reads = self._protocols, self._reads
        self._protocols, self._reads = [], []
        first_read = self._first_read
        outs, position = self._switch.process_reads(reads)
        self._switch.journal.call_when_durable(
            position, lambda: self._deliver(protocols, reads, outs, first_read)
        )

    def _deliver(
        self,
        protocols: list[TerminalProtocol],
        reads: list[Frames],
        outs: list[bytes],
        first_read: float,
    ) -> None:
        dirty = self._dirty
        for protocol, frames, out in zip(protocols, reads, outs, strict=True):
            protocol.answered(out, len(frames))
            if not protocol.dirty:
                protocol.dirty = True
                dirty.append(protocol)
        # From the batch's first read: an upper bound for the later reads of the iteration.
        self._switch.stats.request_seconds.observe(
            time.perf_counter() - first_read, sum(map(len, reads))
        )
        if not self._flush_scheduled:
            # After every waiter of the group has delivered: one write per connection.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for protocol in dirty:
            protocol.dirty = False
            protocol.flush()


class TerminalProtocol(asyncio.Protocol):
    __slots__ = (
        "_batch",
        "_closing_after_send",
        "_codec",
        "_connection_id",
        "_connections",
        "_draining",
        "_in_flight",
        "_outbox",
        "_paused",
        "_switch",
        "_transport",
        "_write_blocked",
        "dirty",
    )

    def __init__(
        self, switch: Switch, connections: set[TerminalProtocol], batch: LoopBatch
    ) -> None:
        self._switch = switch
        self._connections = connections
        self._batch = batch
        self._codec = ServerCodec()
        self._transport: asyncio.Transport | None = None
        self._outbox: list[bytes] = []
        self.dirty = False  # answers in the outbox, a flush to come (LoopBatch)
        self._in_flight = 0
        self._paused = False
        self._closing_after_send = False
        self._draining = False
        self._write_blocked = False
        self._connection_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        stats = self._switch.stats
        if len(self._connections) >= CONNECTIONS_MAX:
            stats.connections_refused_total += 1
            transport.abort()
            return
        self._transport = transport
        self._connections.add(self)
        stats.connections_open = len(self._connections)
        stats.connections_accepted_total += 1
        self._connection_id = stats.connections_accepted_total

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._connections.discard(self)
        self._switch.stats.connections_open = len(self._connections)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # shutting down: read only so that closing sends FIN, not RST
        try:
            self._codec.receive_data(data)
        except LocalProtocolError:
            return  # already failed framing; the close is on its way
        frames = self._codec.next_frames()
        if not frames:
            return
        self._batch.add(self, frames)
        self._in_flight += len(frames)
        last = frames[-1]
        if type(last) is RejectedFrame and last.error.fatal:
            self._closing_after_send = True
            self._switch.stats.connections_closed_for_errors_total += 1
            log.warning(
                "closing a connection whose bytes cannot be framed: %s",
                last.error,
                extra=correlate(connection=self._connection_id, seq=last.seq),
            )
            self.pause_reading()
        elif self._in_flight > IN_FLIGHT_MAX or self._switch.journal.congested:
            self.pause_reading()

    def answered(self, out: bytes, count: int) -> None:
        """`count` requests decided and durable; `out` their answers (LoopBatch)."""
        self._outbox.append(out)
        self._in_flight -= count

    def flush(self) -> None:
        """Write the outbox: once per journal group, after all of it has been answered."""
        transport = self._transport
        outbox = self._outbox
        self._outbox = []
        if transport is None or transport.is_closing():
            return  # the peer left; its decisions are durable and a retry gets them again
        transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        if self._closing_after_send:
            if self._in_flight == 0:
                self._finish()  # after a fatal frame or at shutdown, once all is answered
        else:
            self._maybe_resume_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._paused
            and not self._write_blocked
            and not self._closing_after_send
            and self._in_flight <= IN_FLIGHT_MAX // 2
            and self._transport is not None
        ):
            self._paused = False
            self._transport.resume_reading()

    # A peer that sends but does not read would make our write buffer grow without bound:
    # past the transport's high-water mark we stop reading its requests until it drains.
    def pause_writing(self) -> None:
        self._write_blocked = True
        self.pause_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._maybe_resume_reading()

    def pause_reading(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _finish(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._draining and transport.can_write_eof():
            # A lingering close: FIN after the last answer, then keep reading (and
            # discarding) until the peer closes too. Closing with unread requests in the
            # kernel's buffer would send RST, and RST can destroy answers still in flight.
            transport.write_eof()
            self._resume_for_drain()
        else:
            transport.close()

    def _resume_for_drain(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def stop_reading(self) -> None:
        """Graceful shutdown: take no new requests; answers in flight still go out, then a
        lingering close. New requests are read and dropped (never decided)."""
        self._closing_after_send = True
        self._draining = True
        self._resume_for_drain()
        if self._in_flight == 0 and not self._outbox:
            self._finish()


async def serve_asyncio(
    switch: Switch,
    host: str,
    port: int,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `stop` is set, then drain: refuse new connections and reads, let every
    decided request get its answer once durable, close. Cancellation aborts instead."""
    loop = asyncio.get_running_loop()
    connections: set[TerminalProtocol] = set()
    batch = LoopBatch(switch, loop)
    server = await loop.create_server(
        lambda: TerminalProtocol(switch, connections, batch), host, port, backlog=LISTEN_BACKLOG
    )
    try:
        bound_port: int = server.sockets[0].getsockname()[1]
        log.info("terminal channel on %s:%d (%s loop)", host, bound_port, type(loop).__module__)
        task_status.started(bound_port)
        await stop.wait()
        server.close()
        for connection in list(connections):
            connection.stop_reading()
        await switch.journal.flush()
        await anyio.sleep(0)  # the writes scheduled by the last group's waiters run first
        with anyio.move_on_after(LINGER_SECONDS_MAX):
            while connections:  # peers close after our FIN; the stragglers are aborted
                await anyio.sleep(LINGER_POLL_SECONDS)
    finally:
        server.close()
        for connection in list(connections):
            connection.abort()
