"""The QR payload without I/O: test vectors whole, truncated, with trailing data, every
field altered, and garbage that must only ever give the documented error (h11-style)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from protocols.codes import ResponseCode as C
from protocols.ecard import (
    PAYLOAD_SIZE,
    PREFIX,
    TEXT_SIZE,
    VALIDITY_S_MAX,
    BusinessType,
    QrClaims,
    check_validity,
    decode_qr,
    encode_qr,
    nonce_of,
)
from protocols.ecard.base45 import b45decode, b45encode
from protocols.ecard.payload import BODY, SIGNATURE_DOMAIN
from protocols.errors import LocalProtocolError, RemoteProtocolError
from switch.ecard.image import ERROR_CORRECTION
from tests.ecard.helpers import flip, payload_of, text_of

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
T0_MS = 1_764_400_000_000
SKEW_MS = 15_000
CLAIMS = QrClaims(
    BusinessType.PAYMENT,
    1,
    bytes.fromhex("5e1f0c4a9b3d7e21"),
    bytes.fromhex("a1b2c3d4e5f60718"),
    T0_MS,
    60,
)
QR = encode_qr(CLAIMS, KEY)


def refusal(qr: bytes) -> C:
    """The code decoding and verifying `qr` with KEY gives; fails the test if it passes."""
    with pytest.raises(RemoteProtocolError) as caught:
        decode_qr(qr).verify(KEY.public_key())
    assert caught.value.fatal is False
    return caught.value.code


# -- base45 (RFC 9285 section 4.3 and 4.4 examples) ----------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"AB", b"BB8"),
        (b"Hello!!", b"%69 VD92EX0"),
        (b"base-45", b"UJCLQE7W581"),
        (b"ietf!", b"QED8WEX0"),
        (b"", b""),
    ],
)
def test_base45_rfc_examples(data: bytes, text: bytes) -> None:
    assert b45encode(data) == text
    assert b45decode(text) == data


@pytest.mark.parametrize("text", [b"GGW", b"ZZZ", b"A", b"AAAA", b"aaa", b"AB\x00", b":::"])
def test_base45_rejects_what_no_bytes_encode(text: bytes) -> None:
    with pytest.raises(ValueError, match="base45"):
        b45decode(text)


@given(st.binary(max_size=200))
def test_base45_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


# -- the payload ---------------------------------------------------------------------------


def test_round_trip_and_size() -> None:
    signed = decode_qr(QR)
    assert signed.claims == CLAIMS
    signed.verify(KEY.public_key())
    assert len(QR) == TEXT_SIZE == 145 and len(payload_of(QR)) == PAYLOAD_SIZE == 94
    assert QR.startswith(PREFIX) and QR.isascii()
    assert CLAIMS.expires_at_ms == T0_MS + 60_000


def test_the_text_fits_a_version_6_symbol_in_alphanumeric_mode() -> None:
    code = segno.make(QR.decode(), error=ERROR_CORRECTION, boost_error=False, micro=False)
    assert (code.version, code.mode, code.symbol_size(border=0)) == (6, "alphanumeric", (41, 41))


def test_signatures_are_deterministic_and_cover_a_domain_prefix() -> None:
    assert encode_qr(CLAIMS, KEY) == QR  # Ed25519: the same claims, the same code
    body = payload_of(QR)[: BODY.size]
    KEY.public_key().verify(payload_of(QR)[BODY.size :], SIGNATURE_DOMAIN + body)


def test_other_key_does_not_verify() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_qr(QR).verify(OTHER_KEY.public_key())
    assert caught.value.code is C.QR_SIGNATURE_INVALID


@pytest.mark.parametrize("length", range(TEXT_SIZE))
def test_truncated_anywhere_is_unreadable(length: int) -> None:
    assert refusal(QR[:length]) is C.QR_UNREADABLE


@pytest.mark.parametrize("trailing", [b"0", b"00", b"000", b"\r", b"\n", b" ", QR])
def test_trailing_data_is_unreadable(trailing: bytes) -> None:
    assert refusal(QR + trailing) is C.QR_UNREADABLE


@pytest.mark.parametrize("qr", [QR.lower(), b"HC1:" + QR[4:], b"SC2:" + QR[4:], b"", b"SC1"])
def test_other_prefixes_and_case_are_unreadable(qr: bytes) -> None:
    assert refusal(qr) is C.QR_UNREADABLE


@pytest.mark.parametrize("offset", range(PAYLOAD_SIZE))
def test_every_byte_altered_is_refused(offset: int) -> None:
    """Altering any byte, without the private key, never yields a code that verifies."""
    expected = {C.QR_SIGNATURE_INVALID}
    if offset in (0, 1, 20, 28, 29):  # version, business, time, validity: range-checked
        expected.add(C.QR_UNREADABLE)
    for mask in (0x01, 0x80, 0xFF):
        assert refusal(flip(QR, offset, mask)) in expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("business_type", BusinessType.QUERY),
        ("key_id", 2),
        ("card_token", bytes(8)),
        ("nonce", bytes(8)),
        ("issued_at_ms", T0_MS + 1),
        ("validity_s", 61),
    ],
)
def test_every_field_altered_fails_the_signature(field: str, value: int | bytes) -> None:
    """Each claim altered to another valid value: only the signature can tell."""
    body = bytearray(payload_of(QR))
    altered = QrClaims(**{**{f: getattr(CLAIMS, f) for f in CLAIMS.__slots__}, field: value})
    body[: BODY.size] = altered.body()
    assert decode_qr(text_of(bytes(body))).claims == altered
    assert refusal(text_of(bytes(body))) is C.QR_SIGNATURE_INVALID


@pytest.mark.parametrize(
    ("version", "business", "validity_s"),
    [(0, 2, 60), (2, 2, 60), (255, 2, 60), (1, 0, 60), (1, 5, 60), (1, 2, 0), (1, 2, 301)],
)
def test_out_of_range_fields_are_unreadable(version: int, business: int, validity_s: int) -> None:
    body = BODY.pack(version, business, 1, bytes(8), bytes(8), T0_MS, validity_s)
    assert refusal(text_of(body + bytes(64))) is C.QR_UNREADABLE


def test_issue_time_beyond_the_protocol_range_is_unreadable() -> None:
    body = BODY.pack(1, 2, 1, bytes(8), bytes(8), 2**63, 60)
    assert refusal(text_of(body + bytes(64))) is C.QR_UNREADABLE


@pytest.mark.parametrize(
    "claims",
    [
        QrClaims(BusinessType.QUERY, 0, bytes(8), bytes(8), T0_MS, 60),
        QrClaims(BusinessType.QUERY, 2**16, bytes(8), bytes(8), T0_MS, 60),
        QrClaims(BusinessType.QUERY, 1, bytes(7), bytes(8), T0_MS, 60),
        QrClaims(BusinessType.QUERY, 1, bytes(8), bytes(9), T0_MS, 60),
        QrClaims(BusinessType.QUERY, 1, bytes(8), bytes(8), -1, 60),
        QrClaims(BusinessType.QUERY, 1, bytes(8), bytes(8), T0_MS, VALIDITY_S_MAX + 1),
    ],
)
def test_encoding_out_of_range_claims_is_a_local_error(claims: QrClaims) -> None:
    with pytest.raises(LocalProtocolError):
        encode_qr(claims, KEY)


# -- validity, with the clock passed in ----------------------------------------------------


@pytest.mark.parametrize(
    ("now_ms", "code"),
    [
        (T0_MS - SKEW_MS - 1, C.QR_NOT_YET_VALID),
        (T0_MS - SKEW_MS, None),
        (T0_MS, None),
        (T0_MS + 60_000 + SKEW_MS, None),
        (T0_MS + 60_000 + SKEW_MS + 1, C.EXPIRED_CARD),
    ],
)
def test_validity_edges_are_exact(now_ms: int, code: C | None) -> None:
    if code is None:
        check_validity(CLAIMS, now_ms, SKEW_MS)
        return
    with pytest.raises(RemoteProtocolError) as caught:
        check_validity(CLAIMS, now_ms, SKEW_MS)
    assert caught.value.code is code


def test_nonce_of_identifies_a_readable_code_only() -> None:
    assert nonce_of(QR) == CLAIMS.nonce
    assert nonce_of(QR[:-1]) == b""


# -- fuzz: garbage only ever gives the documented error -------------------------------------

alphabet_text = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=160)
garbage = st.one_of(
    st.binary(max_size=300),
    alphabet_text.map(lambda text: PREFIX + text.encode()),
    st.binary(min_size=PAYLOAD_SIZE - 2, max_size=PAYLOAD_SIZE + 2).map(text_of),
    st.tuples(st.integers(0, TEXT_SIZE - 1), st.binary(min_size=1, max_size=3)).map(
        lambda cut: QR[: cut[0]] + cut[1] + QR[cut[0] + len(cut[1]) :]
    ),
)


@given(garbage)
def test_fuzz_garbage_gives_only_the_documented_errors(data: bytes) -> None:
    try:
        signed = decode_qr(data)
    except RemoteProtocolError as exc:
        assert exc.code is C.QR_UNREADABLE and not exc.fatal
        return
    try:
        signed.verify(KEY.public_key())
    except RemoteProtocolError as exc:
        assert exc.code is C.QR_SIGNATURE_INVALID
        return
    assert data == QR  # nothing but the original verifies


# -- docs/protocol.md agrees with the code -------------------------------------------------

EXAMPLE_BLOCK = re.compile(r"<!-- example(?: text)?: ([\w-]+) -->\s*```\w*\n(.*?)```", re.DOTALL)


def doc_blocks() -> dict[str, str]:
    return dict(EXAMPLE_BLOCK.findall(PROTOCOL_DOC.read_text()))


def hex_block(block: str) -> bytes:
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in block.splitlines()))


def test_doc_worked_example_matches_the_code() -> None:
    blocks = doc_blocks()
    assert hex_block(blocks["qr-private-key"]) == SEED
    assert hex_block(blocks["qr-public-key"]) == KEY.public_key().public_bytes_raw()
    payload = payload_of(QR)
    assert hex_block(blocks["qr-body"]) == payload[: BODY.size]
    assert hex_block(blocks["qr-signature"]) == payload[BODY.size :]
    assert blocks["qr-text"].strip().encode() == QR
    assert decode_qr(blocks["qr-text"].strip().encode()).claims == CLAIMS
