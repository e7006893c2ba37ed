"""Terminal protocol v1 messages.

Every message is a MessagePack array whose first element is the message tag (requests) so a
terminal vendor can build one with any MessagePack library; field order is the wire order.
Trailing fields may be added in later versions; decoders ignore trailing elements they do not
know, so old terminals keep working.

Semantic checks (is the amount positive, does the card exist) belong to the engine, which
answers them with specific response codes; this module checks only shape and type, which
the codec answers with 30 (format error).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Terminal ids are printed on the device and keyed in by field engineers: short upper-case
# alphanumerics. 16 characters is the width of ISO 8583 DE41 (8) doubled for our gate ids.
TERMINAL_ID_LENGTH_MAX = 16
# Card numbers are 9 characters; we accept up to 32 here so that a wrong card number reaches
# the engine and gets 14 (invalid card) rather than 30 (format error), while still bounding
# what a hostile peer can make us hash and look up.
CARD_LENGTH_MAX = 32
# Sequence numbers are unsigned 63-bit so they survive every MessagePack library that maps
# integers onto signed 64-bit types.
SEQ_MAX = 2**63 - 1

TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=TERMINAL_ID_LENGTH_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)]
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
CardNumber = Annotated[str, msgspec.Meta(max_length=CARD_LENGTH_MAX)]
# Stop and station ids are short codes printed on timetables.
STOP_LENGTH_MAX = 16
StopId = Annotated[str, msgspec.Meta(max_length=STOP_LENGTH_MAX)]


class Tap(msgspec.Struct, tag="tap", array_like=True, frozen=True):
    """A transit tap: the fare rules of the terminal's line decide (docs/fares.md).

    stop: the stop a bus validator is at (sectional lines); fixed gates leave it empty.
    """

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    card: CardNumber
    stop: StopId = ""


class Purchase(msgspec.Struct, tag="purchase", array_like=True, frozen=True):
    """A merchant purchase paid from the transit purse (stored value)."""

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    card: CardNumber
    amount_fen: int


class Reversal(msgspec.Struct, tag="reversal", array_like=True, frozen=True):
    """Undo this terminal's earlier request `original_seq` (tap or purchase)."""

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    original_seq: Seq


class Balance(msgspec.Struct, tag="balance", array_like=True, frozen=True):
    """Ask for the transit purse balance of a card."""

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    card: CardNumber


# The QR text as scanned. A version-1 e-card code is 145 characters (protocols.ecard); 512
# leaves room for later payload versions (a longer signature, a certificate reference) while
# bounding what a peer can make us decode.
QR_LENGTH_MAX = 512


class Scan(msgspec.Struct, tag="scan", array_like=True, frozen=True):
    """An e-card QR code scanned at a terminal, decided like the physical card it stands
    for: a tap at a gate (the fare), a purchase of `amount_fen` at a POS.

    qr: the code's content exactly as scanned (ASCII, as bin), without any terminator.
    stop: as for `tap`, at a bus validator on a sectional line.
    """

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    qr: Annotated[bytes, msgspec.Meta(max_length=QR_LENGTH_MAX)]
    amount_fen: int = 0
    stop: StopId = ""


class DenyListRequest(msgspec.Struct, tag="denylist", array_like=True, frozen=True):
    """A gate asks for the deny-list changes since `since_version` (0: the whole list,
    from after card number `cursor`). Read-only: not journalled, no idempotency window."""

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    since_version: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
    cursor: Annotated[str, msgspec.Meta(max_length=CARD_LENGTH_MAX)] = ""


# A gate stores ~25,000 taps while offline (facts.md) and uploads them in messages of at most
# this many: 1,000 taps of ~40 bytes fit one 64 KiB frame with room to spare.
OFFLINE_TAPS_PER_MESSAGE_MAX = 1000


class OfflineTap(msgspec.Struct, array_like=True, frozen=True):
    """One tap a gate accepted while its link was down."""

    offline_seq: Seq  # the gate's own counter for offline taps: their idempotency key
    time_ms: TimeMs  # when the tap happened, by the gate's clock
    card: CardNumber
    stop: StopId = ""
    grey: bool = False  # interrupted: the gate is unsure the passenger went through


class OfflineUpload(msgspec.Struct, tag="offline", array_like=True, frozen=True):
    """Taps made offline. Answered 00 once they are durable: the gate may then delete them.
    Each tap is applied once, whatever how often it is uploaded."""

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs
    taps: Annotated[
        list[OfflineTap], msgspec.Meta(min_length=1, max_length=OFFLINE_TAPS_PER_MESSAGE_MAX)
    ]


class Echo(msgspec.Struct, tag="echo", array_like=True, frozen=True):
    """Liveness and MAC check; moves nothing and is not journalled."""

    terminal_id: TerminalId
    seq: Seq
    terminal_time_ms: TimeMs


Request = Tap | Purchase | Reversal | Balance | Echo | DenyListRequest | OfflineUpload | Scan
REQUEST_TYPES: tuple[type[Request], ...] = (
    Tap,
    Purchase,
    Reversal,
    Balance,
    Echo,
    DenyListRequest,
    OfflineUpload,
    Scan,
)
# The tag of each request type, e.g. for metric labels.
KIND: dict[type[Request], str] = {cls: str(cls.__struct_config__.tag) for cls in REQUEST_TYPES}


class Response(msgspec.Struct, array_like=True, frozen=True):
    """The switch's answer to one request, matched by `seq`.

    amount_fen: money moved by this request (0 on a decline).
    balance_fen: the transit purse after the request, or nil when not disclosed.
    reference: the switch's decision number (approval code), or nil when the request was
        not journalled (format errors, unknown terminal, bad MAC, echo).
    """

    seq: int
    code: str
    amount_fen: int = 0
    balance_fen: int | None = None
    reference: int | None = None
    switch_time_ms: int = 0


class DenyListAnswer(Response, array_like=True, frozen=True):
    """The answer to a `denylist` request: a Response with the list after it, so a client
    that only knows Response still reads the code."""

    denylist_version: int = 0
    full: bool = False  # `added` is the whole list from the request's cursor on
    more: bool = False  # ask again: from denylist_version, or with the next cursor
    added: bytes = b""  # 9-byte card numbers back to back
    removed: bytes = b""
