"""Terminal protocol v1: length-prefixed MessagePack frames with a MAC (docs/protocol.md)."""

from protocols.terminal.codec import (
    FRAME_LENGTH_MAX,
    ClientCodec,
    RejectedFrame,
    RequestFrame,
    ServerCodec,
    encode_request,
    encode_response,
)
from protocols.terminal.mac import KEY_SIZE, MAC_SIZE, MacKey
from protocols.terminal.messages import (
    Balance,
    DenyListAnswer,
    DenyListRequest,
    Echo,
    OfflineTap,
    OfflineUpload,
    Purchase,
    Request,
    Response,
    Reversal,
    Scan,
    Tap,
)

__all__ = [
    "FRAME_LENGTH_MAX",
    "KEY_SIZE",
    "MAC_SIZE",
    "Balance",
    "ClientCodec",
    "DenyListAnswer",
    "DenyListRequest",
    "Echo",
    "MacKey",
    "OfflineTap",
    "OfflineUpload",
    "Purchase",
    "RejectedFrame",
    "Request",
    "RequestFrame",
    "Response",
    "Reversal",
    "Scan",
    "ServerCodec",
    "Tap",
    "encode_request",
    "encode_response",
]
