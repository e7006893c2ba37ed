"""The least a server can do with terminal frames, on the switch's own event loop.

    python -m bench.baseline [--host 127.0.0.1] [--port 0]

It decodes each read with the switch's ServerCodec and answers every frame with a fixed
approval (only the seq is copied, so the client can match it), unsigned, in one write per
read: no MAC check, no engine, no journal, no fsync. What the switch does beyond this is
what the benchmark ratios measure. It prints the same "serving terminals on HOST:PORT"
line as the switch so one launcher starts both.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import cast

import uvloop

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError
from protocols.terminal import RejectedFrame, RequestFrame, Response, ServerCodec, encode_response

APPROVED = ResponseCode.APPROVED.value
# The fixed answer's fields: a tap's fare and a plausible purse, reference and time.
FIXED_AMOUNT_FEN = 200
FIXED_BALANCE_FEN = 19_800
FIXED_REFERENCE = 1
FIXED_SWITCH_TIME_MS = 1_700_000_000_000
LISTEN_BACKLOG = 4096  # as the switch's adapter: a whole run's connections arrive at once


class Connection(asyncio.Protocol, abc.ABC):
    """One client's connection: each read goes to `answer()`, whose answers leave in one
    write; the connection closes when `answer()` says the stream cannot go on."""

    __slots__ = ("_transport",)

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    @abc.abstractmethod
    def answer(self, data: bytes) -> tuple[list[bytes], bool]:
        """The answers to what `data` completes, and whether to close after them."""

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        try:
            out, close = self.answer(data)
        except LocalProtocolError:  # the codec failed for good on an earlier read
            return
        if out:
            transport.write(b"".join(out))
        if close:
            transport.close()


class BaselineProtocol(Connection):
    __slots__ = ("_codec",)

    def __init__(self) -> None:
        super().__init__()
        self._codec = ServerCodec()

    def answer(self, data: bytes) -> tuple[list[bytes], bool]:
        self._codec.receive_data(data)
        frames = self._codec.next_frames()
        out = []
        for frame in frames:
            if type(frame) is RequestFrame:
                response = Response(
                    frame.request.seq,
                    APPROVED,
                    FIXED_AMOUNT_FEN,
                    FIXED_BALANCE_FEN,
                    FIXED_REFERENCE,
                    FIXED_SWITCH_TIME_MS,
                )
            else:
                assert type(frame) is RejectedFrame
                response = Response(frame.seq, frame.error.code.value)
            out.append(encode_response(response, None))
        fatal = bool(frames) and type(frames[-1]) is RejectedFrame and frames[-1].error.fatal
        return out, fatal


async def serve_until_signalled(
    protocol: Callable[[], asyncio.Protocol], host: str, port: int, serving: str
) -> None:
    """Serve until SIGINT or SIGTERM, once listening printing "baseline: SERVING on
    HOST:PORT" (the line the bench's launchers wait for)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(protocol, host, port, backlog=LISTEN_BACKLOG)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"baseline: {serving} on {host}:{bound_port}", flush=True)
    async with server:
        await stop.wait()


def run_server(
    argv: list[str] | None,
    prog: str,
    description: str | None,
    protocol: Callable[[], asyncio.Protocol],
    serving: str,
) -> int:
    """A baseline server's command line: --host and --port, then serve on uvloop."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    uvloop.run(serve_until_signalled(protocol, args.host, args.port, serving))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_server(
        argv, "python -m bench.baseline", __doc__, BaselineProtocol, "serving terminals"
    )


if __name__ == "__main__":
    sys.exit(main())
