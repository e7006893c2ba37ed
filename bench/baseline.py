"""The least a server can do with terminal frames, on the switch's own event loop.

    python -m bench.baseline [--host 127.0.0.1] [--port 0]

It decodes each read with the switch's ServerCodec and answers every frame with a fixed
approval (only the seq is copied, so the client can match it), unsigned, in one write per
read: no MAC check, no engine, no journal, no fsync. What the switch does beyond this is
what the benchmark ratios measure. It prints the same "serving terminals on HOST:PORT"
line as the switch so one launcher starts both.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
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


class BaselineProtocol(asyncio.Protocol):
    __slots__ = ("_codec", "_transport")

    def __init__(self) -> None:
        self._codec = ServerCodec()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._codec.receive_data(data)
        except LocalProtocolError:
            return
        frames = self._codec.next_frames()
        if not frames or self._transport is None:
            return
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
        self._transport.write(b"".join(out))
        last = frames[-1]
        if type(last) is RejectedFrame and last.error.fatal:
            self._transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(BaselineProtocol, host, port, backlog=LISTEN_BACKLOG)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"baseline: serving terminals on {host}:{bound_port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
