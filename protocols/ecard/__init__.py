"""E-card QR codes (电子社保卡 dynamic QR), sans-I/O: payload encode, decode and verify.

base45.py    RFC 9285 text encoding for the QR alphanumeric mode
payload.py   the signed payload: layout, decoding, signature and validity checks

Nothing here reads a clock or touches I/O; keys and time are passed in. Errors are
protocols.errors.RemoteProtocolError carrying the response code to answer with.
"""

from protocols.ecard.payload import (
    NONCE_SIZE,
    PAYLOAD_SIZE,
    PREFIX,
    TEXT_SIZE,
    TOKEN_SIZE,
    VALIDITY_S_MAX,
    BusinessType,
    QrClaims,
    SignedQr,
    check_validity,
    decode_qr,
    encode_qr,
    nonce_of,
)

__all__ = [
    "NONCE_SIZE",
    "PAYLOAD_SIZE",
    "PREFIX",
    "TEXT_SIZE",
    "TOKEN_SIZE",
    "VALIDITY_S_MAX",
    "BusinessType",
    "QrClaims",
    "SignedQr",
    "check_validity",
    "decode_qr",
    "encode_qr",
    "nonce_of",
]
