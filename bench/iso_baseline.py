"""The least an ISO 8583 server can do, on the switch's own event loop: the ISO mode's
baseline.

    python -m bench.iso_baseline [--host 127.0.0.1] [--port 0]

It frames and decodes each read with the switch's own codec (protocols.iso8583) and answers
every message with a fixed approval: the request's MTI answered (0200 → 0210), DE11 and
DE41 copied so the client can match it, DE39 00, encoded with the same codec, unsigned. No
MAC check, no acquirer core, no journal, no fsync, no bank. What the switch does beyond
this is what the ISO mode's ratios measure. It prints the same "ISO 8583 on HOST:PORT" line
as the switch so one launcher starts both.
"""

from __future__ import annotations

import sys

from bench.baseline import Connection, run_server
from protocols.codes import ResponseCode
from protocols.iso8583.codec import IsoCodec, IsoMessage, encode_message
from protocols.iso8583.messages import response_mti

APPROVED = ResponseCode.APPROVED.value
# What the answer copies from its request: enough for a pipelined client to match it.
MATCHED_BY = ("11", "41")


class IsoBaselineProtocol(Connection):
    __slots__ = ("_codec",)

    def __init__(self) -> None:
        super().__init__()
        self._codec = IsoCodec()

    def answer(self, data: bytes) -> tuple[list[bytes], bool]:
        self._codec.receive_data(data)
        out = []
        for message in self._codec.next_messages():
            # A message we cannot read gets no answer: the bench's clients send none.
            if type(message) is IsoMessage:
                fields = message.fields
                answer = {"t": response_mti(message.mti), "39": APPROVED}
                answer.update({name: fields[name] for name in MATCHED_BY if name in fields})
                out.append(encode_message(answer, None))
        return out, self._codec.failed


def main(argv: list[str] | None = None) -> int:
    prog = "python -m bench.iso_baseline"
    return run_server(argv, prog, __doc__, IsoBaselineProtocol, "ISO 8583")


if __name__ == "__main__":
    sys.exit(main())
