"""Framing: every ISO 8583 message on a TCP stream follows a 2-byte length header.

    length   u16, big-endian: the number of bytes that follow (the message)
    message  MTI, bitmap(s), fields (spec.py)

Sans-I/O: `FrameReader.receive_data()` stores bytes, `next_frames()` returns every
complete message. A length outside the limits means the stream is out of step; it cannot be
resynchronised, so the reader fails for good and the connection must close.
"""

from __future__ import annotations

import struct

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError

LENGTH_HEADER = struct.Struct(">H")
LENGTH_HEADER_SIZE = LENGTH_HEADER.size
# The smallest message: a 4-character MTI and an 8-byte primary bitmap. Anything shorter
# cannot be a message, so its length header is garbage.
MESSAGE_LENGTH_MIN = 4 + 8
# Our messages are 60-250 bytes. 8 KiB is above the largest message the 1987 field set
# makes in practice (a handful of LLLVAR fields of 999 bytes) while bounding what one
# connection can make us buffer before we know whether its bytes are garbage.
MESSAGE_LENGTH_MAX = 8 * 1024


def frame(message: bytes) -> bytes:
    if not MESSAGE_LENGTH_MIN <= len(message) <= MESSAGE_LENGTH_MAX:
        raise LocalProtocolError(f"message of {len(message)} bytes cannot be framed")
    return LENGTH_HEADER.pack(len(message)) + message


class FrameReader:
    __slots__ = ("_buffer", "_failed")

    def __init__(self) -> None:
        self._buffer = b""
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self._failed:
            raise LocalProtocolError("the stream failed framing; close the connection")
        self._buffer = self._buffer + data if self._buffer else bytes(data)

    def next_frames(self) -> tuple[list[bytes], RemoteProtocolError | None]:
        """Every complete message so far, and the framing error that ended the stream."""
        buffer = self._buffer
        size = len(buffer)
        offset = 0
        messages: list[bytes] = []
        error = None
        while size - offset >= LENGTH_HEADER_SIZE:
            (length,) = LENGTH_HEADER.unpack_from(buffer, offset)
            if not MESSAGE_LENGTH_MIN <= length <= MESSAGE_LENGTH_MAX:
                error = RemoteProtocolError(
                    f"length header {length} outside {MESSAGE_LENGTH_MIN}..{MESSAGE_LENGTH_MAX}",
                    code=ResponseCode.FORMAT_ERROR,
                    fatal=True,
                )
                self._failed = True
                offset = size
                break
            end = offset + LENGTH_HEADER_SIZE + length
            if end > size:
                break
            messages.append(buffer[offset + LENGTH_HEADER_SIZE : end])
            offset = end
        self._buffer = buffer[offset:] if offset < size else b""
        return messages, error
