"""Sans-I/O codec for terminal protocol v1.

A frame on the wire is

    length  u32, big-endian: the number of bytes that follow (body + MAC)
    body    one MessagePack array (messages.py)
    mac     MAC_SIZE bytes: mac.MacKey.sign(body)

The server side feeds whatever a read returned to `ServerCodec.receive_data()` and takes
every complete frame at once with `ServerCodec.next_frames()`: the hot path decodes a whole
read as one batch. Each item is a `RequestFrame` (decoded, MAC not yet checked: the key
belongs to the engine) or a `RejectedFrame` carrying the error and, when it could be read,
the sequence number to answer. A framing error cannot be resynchronised: the codec returns
a fatal `RejectedFrame` last and refuses further data.
"""

from __future__ import annotations

import struct

import msgspec

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.terminal.mac import MAC_SIZE, ZERO_MAC, MacKey
from protocols.terminal.messages import (
    SEQ_MAX,
    TERMINAL_ID_LENGTH_MAX,
    DenyListAnswer,
    Request,
    Response,
)

LENGTH_PREFIX = struct.Struct(">I")
LENGTH_PREFIX_SIZE = LENGTH_PREFIX.size
# A request is ~40-60 bytes. 64 KiB leaves room for the batch uploads and list downloads
# that later protocol versions carry (offline taps, deny-list chunks) while bounding the
# memory one connection can pin before we know whether its bytes are garbage.
FRAME_LENGTH_MAX = 64 * 1024
# The smallest frame holds a MAC and a one-byte body.
FRAME_LENGTH_MIN = MAC_SIZE + 1

_request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
_response_decoder = msgspec.msgpack.Decoder(Response)
_denylist_answer_decoder = msgspec.msgpack.Decoder(DenyListAnswer)
_encoder = msgspec.msgpack.Encoder()
_loose_decoder = msgspec.msgpack.Decoder()


class RequestFrame:
    """A decoded request with the exact bytes its MAC covers."""

    __slots__ = ("body", "mac", "request")

    def __init__(self, request: Request, body: bytes, mac: bytes) -> None:
        self.request = request
        self.body = body
        self.mac = mac


class RejectedFrame:
    """A frame the codec could not accept, and what it could still read of it."""

    __slots__ = ("error", "seq", "terminal_id")

    def __init__(
        self, error: RemoteProtocolError, seq: int = 0, terminal_id: str | None = None
    ) -> None:
        self.error = error
        self.seq = seq
        self.terminal_id = terminal_id


def _salvage_identity(body: bytes) -> tuple[int, str | None]:
    """Best effort: the (seq, terminal id) of a body that failed typed decoding, so the
    format-error answer can still be matched by the terminal."""
    try:
        loose = _loose_decoder.decode(body)
    except msgspec.DecodeError:
        return 0, None
    if not isinstance(loose, list) or len(loose) < 3:
        return 0, None
    seq = loose[2]
    if type(seq) is not int or not 1 <= seq <= SEQ_MAX:
        seq = 0
    terminal_id = loose[1]
    if type(terminal_id) is not str or not 1 <= len(terminal_id) <= TERMINAL_ID_LENGTH_MAX:
        terminal_id = None
    return seq, terminal_id


class _FrameReader:
    """Splits a byte stream into (body, mac) pairs; shared by both sides."""

    __slots__ = ("_buffer", "_failed")

    def __init__(self) -> None:
        self._buffer = b""
        self._failed = False

    def receive_data(self, data: bytes) -> None:
        if self._failed:
            raise LocalProtocolError("the stream failed framing; close the connection")
        self._buffer = self._buffer + data if self._buffer else bytes(data)

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def _split(self) -> tuple[list[tuple[bytes, bytes]], RemoteProtocolError | None]:
        buffer = self._buffer
        size = len(buffer)
        offset = 0
        frames: list[tuple[bytes, bytes]] = []
        error = None
        while size - offset >= LENGTH_PREFIX_SIZE:
            (length,) = LENGTH_PREFIX.unpack_from(buffer, offset)
            if not FRAME_LENGTH_MIN <= length <= FRAME_LENGTH_MAX:
                error = RemoteProtocolError(
                    f"frame length {length} outside {FRAME_LENGTH_MIN}..{FRAME_LENGTH_MAX}",
                    code=ResponseCode.FORMAT_ERROR,
                    fatal=True,
                )
                self._failed = True
                offset = size
                break
            end = offset + LENGTH_PREFIX_SIZE + length
            if end > size:
                break
            mac_start = end - MAC_SIZE
            frames.append((buffer[offset + LENGTH_PREFIX_SIZE : mac_start], buffer[mac_start:end]))
            offset = end
        self._buffer = buffer[offset:] if offset < size else b""
        return frames, error


class ServerCodec(_FrameReader):
    """The switch's side: request frames in, response frames out."""

    __slots__ = ()

    def next_frames(self) -> list[RequestFrame | RejectedFrame]:
        """Every complete frame received so far, decoded, in order."""
        raw, error = self._split()
        frames: list[RequestFrame | RejectedFrame] = []
        append = frames.append
        decode = _request_decoder.decode
        for body, mac in raw:
            try:
                append(RequestFrame(decode(body), body, mac))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                seq, terminal_id = _salvage_identity(body)
                append(
                    RejectedFrame(
                        RemoteProtocolError(str(exc), code=ResponseCode.FORMAT_ERROR, fatal=False),
                        seq,
                        terminal_id,
                    )
                )
        if error is not None:
            frames.append(RejectedFrame(error))
        return frames


def encode_response(response: Response, key: MacKey | None) -> bytes:
    """One response frame. Without a key (unknown terminal) the MAC is all zeros; terminals
    must never treat an answer whose MAC fails as an approval."""
    body = _encoder.encode(response)
    mac = key.sign(body) if key is not None else ZERO_MAC
    return LENGTH_PREFIX.pack(len(body) + MAC_SIZE) + body + mac


def encode_request(request: Request, key: MacKey) -> bytes:
    body = _encoder.encode(request)
    return LENGTH_PREFIX.pack(len(body) + MAC_SIZE) + body + key.sign(body)


class ClientCodec(_FrameReader):
    """A terminal's side: responses in, verified with the terminal's key."""

    __slots__ = ("_denylist_seqs", "_key")

    def __init__(self, key: MacKey) -> None:
        super().__init__()
        self._key = key
        self._denylist_seqs: set[int] = set()

    def expect_denylist(self, seq: int) -> None:
        """The answer to `seq` carries a deny-list: decode it as a DenyListAnswer."""
        self._denylist_seqs.add(seq)

    def send(self, request: Request) -> bytes:
        return encode_request(request, self._key)

    def next_responses(self) -> list[tuple[Response, bool]]:
        """(response, mac_ok) for every complete frame; raises RemoteProtocolError on garbage."""
        raw, error = self._split()
        out: list[tuple[Response, bool]] = []
        for body, mac in raw:
            try:
                response = _response_decoder.decode(body)
                if response.seq in self._denylist_seqs:
                    self._denylist_seqs.discard(response.seq)
                    response = _denylist_answer_decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # The switch never sends this: the stream is not ours or is damaged.
                self._failed = True
                raise RemoteProtocolError(
                    f"undecodable response: {exc}", code=ResponseCode.FORMAT_ERROR, fatal=True
                ) from exc
            out.append((response, self._key.verify(body, mac)))
        if error is not None:
            raise error
        return out
