"""ISO 8583:1987 for merchants, acquirers and partner banks (docs/iso8583.md).

spec.py      the field specification (pyiso8583's 1987 one, as our own table)
fields.py    MTI, bitmaps and fields: our codec, agreeing with pyiso8583 on every message
framing.py   the 2-byte length header
mac.py       DE64/DE128
codec.py     bytes in, messages out; messages in, framed bytes out
messages.py  MTIs, onecard's use of the fields, the typed request

Sans-I/O like every codec in this package: no sockets, clocks or event loops.
"""

from protocols.iso8583.codec import (
    IsoCodec,
    IsoMessage,
    RejectedMessage,
    decode_message,
    encode_message,
)
from protocols.iso8583.messages import (
    Account,
    AmountType,
    IsoRequest,
    Mti,
    NetworkCode,
    Original,
    TransactionType,
    parse_request,
    response_fields,
    response_mti,
)
from protocols.iso8583.spec import SPEC

__all__ = [
    "SPEC",
    "Account",
    "AmountType",
    "IsoCodec",
    "IsoMessage",
    "IsoRequest",
    "Mti",
    "NetworkCode",
    "Original",
    "RejectedMessage",
    "TransactionType",
    "decode_message",
    "encode_message",
    "parse_request",
    "response_fields",
    "response_mti",
]
