"""What the misuse watcher (in the switch) and its follower process say to each other.

The follower (`python -m switch.misuse.follower`) reads the watcher's messages on its
stdin and answers on its stdout. A message is a u32 big-endian length and a MessagePack
body:

    watcher -> follower   Start, once: where to begin, the rules' settings and places,
                          and the places of the terminals registered so far
                          Judge, each pass: records before this position are durable
    follower -> watcher   Judged, one per Judge: the index it judged up to and the
                          findings among those records

Only one Judge is ever outstanding, so neither side buffers more than one pass.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import msgspec

from switch.errors import FollowerError
from switch.misuse.config import MisuseConfig
from switch.misuse.places import Position
from switch.misuse.rules import Finding
from switch.transit.rides import Place

LENGTH = struct.Struct(">I")
# Bounds what either side reads for one message. The largest are a Start naming every
# terminal (10,000 at ~60 bytes) and a Judged with a finding for each of its records
# (JUDGE_RECORDS_MAX at ~80 bytes): a few MiB at most.
MESSAGE_BYTES_MAX = 16 * 1024 * 1024


class Start(msgspec.Struct, tag="start", array_like=True, frozen=True):
    journal_dir: str
    next_index: int  # the first record to judge
    config: MisuseConfig
    places: dict[str, Position]  # misuse/places.py, by "line/station"
    terminals: dict[str, Place]  # terminal id -> where it stands


class Judge(msgspec.Struct, tag="judge", array_like=True, frozen=True):
    durable_position: int  # records before it may be read


class Judged(msgspec.Struct, tag="judged", array_like=True, frozen=True):
    next_index: int  # the first record not judged yet
    findings: list[Finding]


Message = Start | Judge | Judged

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    body = _encoder.encode(message)
    return LENGTH.pack(len(body)) + body


def body_length(prefix: bytes) -> int:
    (length,) = LENGTH.unpack(prefix)
    if length > MESSAGE_BYTES_MAX:
        raise FollowerError(f"a message of {length} bytes (at most {MESSAGE_BYTES_MAX})")
    return int(length)


def decode(body: bytes) -> Message:
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise FollowerError(f"undecodable message: {exc}") from exc


def read_message(stream: BinaryIO) -> Message | None:
    """The next message from a blocking stream (the follower's stdin); None at its end."""
    prefix = stream.read(LENGTH.size)
    if not prefix:
        return None
    if len(prefix) < LENGTH.size:
        raise FollowerError("the stream ended inside a message's length")
    length = body_length(prefix)
    body = stream.read(length)
    if len(body) < length:
        raise FollowerError("the stream ended inside a message")
    return decode(body)
