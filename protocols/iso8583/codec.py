"""Sans-I/O ISO 8583 codec: the 2-byte length framing, pyiso8583 with our 1987 spec, and
the MAC. Both ends use it: the switch's listener for merchants and acquirers, the switch's
links to partner banks, the bank simulator and the tests' clients.

`IsoCodec.receive_data(bytes)` stores what a read returned; `next_messages()` returns every
complete message, each an `IsoMessage` (decoded; MAC not yet checked, since the key
belongs to whoever knows the sender) or a `RejectedMessage` carrying the
RemoteProtocolError and what could still be read of it (its MTI) so the answer can be
addressed. A framing error is fatal: it comes last, and the codec refuses further data.

pyiso8583 does the field work. It costs ~25 µs to decode and ~30 µs to encode a
purchase on the bench machine (docs/iso8583.md section 9), which is not what bounds the
ISO channel; a codec of our own would have to agree with it on every message.
"""

from __future__ import annotations

from collections.abc import Mapping

import iso8583

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.iso8583.framing import FrameReader, frame
from protocols.iso8583.mac import MAC_SIZE, MacKey, mac_field
from protocols.iso8583.spec import SPEC

ZERO_MAC_HEX = "00" * MAC_SIZE
MTI_SIZE = 4


class IsoMessage:
    """A decoded message: pyiso8583's field dict (`t` the MTI, `p`/`1` the bitmaps, "2" ..
    "128" the fields, binary ones as hex strings) and the bytes its MAC covers."""

    __slots__ = ("fields", "raw")

    def __init__(self, fields: dict[str, str], raw: bytes) -> None:
        self.fields = fields
        self.raw = raw

    @property
    def mti(self) -> str:
        return self.fields["t"]

    def verify(self, key: MacKey) -> bool:
        return key.verify(self.raw[:-MAC_SIZE], self.raw[-MAC_SIZE:])

    def __repr__(self) -> str:
        return f"IsoMessage({self.fields!r})"


class RejectedMessage:
    """A message that could not be decoded: why, and its MTI when it could be read."""

    __slots__ = ("error", "mti")

    def __init__(self, error: RemoteProtocolError, mti: str = "") -> None:
        self.error = error
        self.mti = mti


def _format_error(message: str, *, fatal: bool = False) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=ResponseCode.FORMAT_ERROR, fatal=fatal)


def decode_message(raw: bytes) -> IsoMessage:
    """One message (without its length header); RemoteProtocolError (30) on anything that is
    not a well-formed 1987 message ending in its MAC field."""
    try:
        fields, _ = iso8583.decode(raw, SPEC)
    except iso8583.DecodeError as exc:
        raise _format_error(f"undecodable ISO 8583 message: {exc}") from exc
    # pyiso8583 returns str values for our spec (its type hints say more).
    mti = fields["t"]
    if not (mti.isascii() and mti.isdigit()):
        raise _format_error(f"MTI {mti!r} is not four digits")
    secondary = "1" in fields
    expected = mac_field(secondary)
    if expected not in fields:
        raise _format_error(f"no MAC: DE{expected} missing")
    if secondary and "64" in fields:
        raise _format_error("DE64 present with a secondary bitmap: the MAC goes in DE128")
    return IsoMessage(fields, raw)


def _salvage_mti(raw: bytes) -> str:
    head = raw[:MTI_SIZE]
    return head.decode() if len(head) == MTI_SIZE and head.isdigit() else ""


def encode_message(fields: Mapping[str, str], key: MacKey | None) -> bytes:
    """One framed message with its MAC (all zeros without a key: answers that must not be
    signed, such as those to unknown terminals or unreadable requests). `fields` is
    pyiso8583's decoded form; the bitmaps and the MAC field are computed here."""
    document = {
        name: value
        for name, value in fields.items()
        if name not in ("p", "1", "64", "128") and not name.startswith("_")
    }
    secondary = any(name.isdigit() and int(name) > 64 for name in document)
    document[mac_field(secondary)] = ZERO_MAC_HEX
    try:
        raw, _ = iso8583.encode(document, SPEC)
    except iso8583.EncodeError as exc:
        raise LocalProtocolError(f"cannot encode {fields.get('t')}: {exc}") from exc
    message = bytes(raw)
    if key is not None:
        message = message[:-MAC_SIZE] + key.sign(message[:-MAC_SIZE])
    return frame(message)


class IsoCodec(FrameReader):
    """One connection's inbound side: bytes in, decoded messages out."""

    __slots__ = ()

    def next_messages(self) -> list[IsoMessage | RejectedMessage]:
        raw_messages, error = self.next_frames()
        out: list[IsoMessage | RejectedMessage] = []
        for raw in raw_messages:
            try:
                out.append(decode_message(raw))
            except RemoteProtocolError as exc:
                out.append(RejectedMessage(exc, _salvage_mti(raw)))
        if error is not None:
            out.append(RejectedMessage(error))
        return out
