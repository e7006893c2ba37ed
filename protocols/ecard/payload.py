"""The e-card QR payload, version 1: encode, decode, verify (docs/protocol.md section 17).

The QR code holds ASCII text: `PREFIX` followed by the base45 encoding of 94 bytes

    offset size  field
    0      1     version          1
    1      1     business type    1 query, 2 payment, 3 other, 4 medical
    2      2     key id           u16 big-endian: which issuer key signed it
    4      8     card token       the e-card's random token (never the ID or card number)
    12     8     nonce            random, one-time
    20     8     issued_at_ms     u64 big-endian, Unix epoch milliseconds
    28     2     validity_s       u16 big-endian, 1 ..= VALIDITY_S_MAX
    30     64    signature        Ed25519 over SIGNATURE_DOMAIN + bytes 0..30

so the text is 4 + 141 = 145 characters, a version-6 QR symbol (41 x 41 modules) at error
correction level M in alphanumeric mode.

Sans-I/O: bytes in, a `SignedQr` or a RemoteProtocolError carrying the response code out.
There is no clock here: the caller passes the time to `check_validity`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.codes import ResponseCode
from protocols.ecard.base45 import b45decode, b45encode
from protocols.errors import LocalProtocolError, RemoteProtocolError

# Marks the text as a Shiyan social security card QR, version 1, so a terminal that also
# reads other QR codes (payment apps, tickets) can route it without trying to decode it.
# All four characters are in the QR alphanumeric set.
PREFIX = b"SC1:"
VERSION = 1
# The signed part: version, business type, key id, card token, nonce, issued_at_ms,
# validity_s.
BODY = struct.Struct(">BBH8s8sQH")
TOKEN_SIZE = 8
NONCE_SIZE = 8
SIGNATURE_SIZE = 64
PAYLOAD_SIZE = BODY.size + SIGNATURE_SIZE
TEXT_SIZE = len(PREFIX) + (PAYLOAD_SIZE // 2) * 3 + (PAYLOAD_SIZE % 2) * 2
# Ed25519 has no context string; prefixing one keeps a signature made for a QR from ever
# verifying as anything else signed with the same key, and vice versa.
SIGNATURE_DOMAIN = b"onecard e-card qr v1\x00"
# Apps refresh the code about every 60 s; 300 s lets an operator lengthen it for places
# with poor coverage while bounding how long the switch must remember a used nonce.
VALIDITY_S_MAX = 300
# Times share the terminal protocol's range, so they survive signed 64-bit integers.
TIME_MS_MAX = 2**63 - 1
KEY_ID_MAX = 0xFFFF
MS_PER_SECOND = 1000

C = ResponseCode


class BusinessType(enum.IntEnum):
    """What the holder chose in the app; the business types terminals know (facts.md)."""

    QUERY = 1
    PAYMENT = 2
    OTHER = 3
    MEDICAL = 4


@dataclass(frozen=True, slots=True)
class QrClaims:
    """What a QR code says about itself; believed only once its signature verifies."""

    business_type: BusinessType
    key_id: int
    card_token: bytes
    nonce: bytes
    issued_at_ms: int
    validity_s: int

    @property
    def expires_at_ms(self) -> int:
        return self.issued_at_ms + self.validity_s * MS_PER_SECOND

    def body(self) -> bytes:
        """The 30 signed bytes; LocalProtocolError if a field is out of its range."""
        if not 1 <= self.key_id <= KEY_ID_MAX:
            raise LocalProtocolError(f"key id {self.key_id} outside 1..{KEY_ID_MAX}")
        if len(self.card_token) != TOKEN_SIZE or len(self.nonce) != NONCE_SIZE:
            raise LocalProtocolError(f"card token and nonce are {TOKEN_SIZE} bytes each")
        if not 0 <= self.issued_at_ms <= TIME_MS_MAX:
            raise LocalProtocolError(f"issued_at_ms {self.issued_at_ms} out of range")
        if not 1 <= self.validity_s <= VALIDITY_S_MAX:
            raise LocalProtocolError(f"validity {self.validity_s} s outside 1..{VALIDITY_S_MAX}")
        return BODY.pack(
            VERSION,
            self.business_type,
            self.key_id,
            self.card_token,
            self.nonce,
            self.issued_at_ms,
            self.validity_s,
        )


@dataclass(frozen=True, slots=True)
class SignedQr:
    """A decoded QR code whose signature has not been checked yet."""

    claims: QrClaims
    body: bytes
    signature: bytes

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """RemoteProtocolError (QR_SIGNATURE_INVALID) unless `public_key` signed it."""
        try:
            public_key.verify(self.signature, SIGNATURE_DOMAIN + self.body)
        except InvalidSignature:
            raise _refused("signature does not verify", C.QR_SIGNATURE_INVALID) from None


def _refused(message: str, code: ResponseCode) -> RemoteProtocolError:
    # A bad QR code never desynchronises the terminal protocol that carried it.
    return RemoteProtocolError(message, code=code, fatal=False)


def encode_qr(claims: QrClaims, private_key: Ed25519PrivateKey) -> bytes:
    """The QR code's text (ASCII bytes) for `claims`, signed with `private_key`."""
    body = claims.body()
    text = PREFIX + b45encode(body + private_key.sign(SIGNATURE_DOMAIN + body))
    assert len(text) == TEXT_SIZE
    return text


def decode_qr(text: bytes) -> SignedQr:
    """Parse a scanned QR code's text; RemoteProtocolError (QR_UNREADABLE) unless it is a
    version-1 e-card payload with every field in range. The signature is not checked."""
    if not text.startswith(PREFIX):
        raise _refused("not an e-card QR code (prefix)", C.QR_UNREADABLE)
    if len(text) != TEXT_SIZE:
        raise _refused(f"QR text is {len(text)} characters, not {TEXT_SIZE}", C.QR_UNREADABLE)
    try:
        payload = b45decode(text[len(PREFIX) :])
    except ValueError as exc:
        raise _refused(f"QR text is not base45: {exc}", C.QR_UNREADABLE) from None
    if len(payload) != PAYLOAD_SIZE:  # a base45 group may decode to one byte, not two
        raise _refused(f"QR payload is {len(payload)} bytes, not {PAYLOAD_SIZE}", C.QR_UNREADABLE)
    version, business, key_id, token, nonce, issued_at_ms, validity_s = BODY.unpack_from(payload)
    if version != VERSION:
        raise _refused(f"QR payload version {version}", C.QR_UNREADABLE)
    if business not in BusinessType._value2member_map_:
        raise _refused(f"business type {business:02d}", C.QR_UNREADABLE)
    if issued_at_ms > TIME_MS_MAX:
        raise _refused("issue time out of range", C.QR_UNREADABLE)
    if not 1 <= validity_s <= VALIDITY_S_MAX:
        raise _refused(f"validity {validity_s} s", C.QR_UNREADABLE)
    claims = QrClaims(BusinessType(business), key_id, token, nonce, issued_at_ms, validity_s)
    return SignedQr(claims, payload[: BODY.size], payload[BODY.size :])


def check_validity(claims: QrClaims, now_ms: int, skew_ms: int) -> None:
    """RemoteProtocolError unless `now_ms` lies in the code's validity period widened by
    `skew_ms` at both ends (the issuer's and the switch's clocks may differ that much)."""
    if claims.issued_at_ms - skew_ms > now_ms:
        raise _refused("issued in the future", C.QR_NOT_YET_VALID)
    if now_ms > claims.expires_at_ms + skew_ms:
        raise _refused("expired", C.EXPIRED_CARD)


def nonce_of(text: bytes) -> bytes:
    """The nonce of a decodable QR code, else b"": what identifies the code when a
    terminal retries a scan (the idempotency fingerprint)."""
    try:
        return decode_qr(text).claims.nonce
    except RemoteProtocolError:
        return b""
