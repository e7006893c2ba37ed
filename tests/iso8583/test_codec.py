"""The sans-I/O ISO 8583 codec: framing, pyiso8583's 1987 spec, the MAC, bad input."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iso8583.specs import default as REFERENCE_SPEC

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.iso8583 import (
    IsoCodec,
    IsoMessage,
    RejectedMessage,
    decode_message,
    encode_message,
    parse_request,
    response_mti,
)
from protocols.iso8583.framing import MESSAGE_LENGTH_MAX, MESSAGE_LENGTH_MIN
from protocols.iso8583.mac import MacKey
from protocols.iso8583.messages import (
    additional_amounts,
    parse_additional_amounts,
    parse_tlv,
    tlv,
    transmission_time,
)
from protocols.iso8583.spec import FORMAT_KEYS, SPEC
from tests.iso8583.client import decode, encode

KEY = bytes(range(16))
PURCHASE = {
    "t": "0200",
    "2": "X00000001",
    "3": "000000",
    "4": "000000001234",
    "7": "1130020000",
    "11": "000042",
    "41": "P0001   ",
    "49": "156",
}


def frames(*messages: dict[str, str]) -> bytes:
    return b"".join(encode(m, KEY) for m in messages)


def test_spec_is_pyiso8583s_1987_spec() -> None:
    assert SPEC.keys() == REFERENCE_SPEC.keys()
    for name, field in SPEC.items():
        for attribute in FORMAT_KEYS:
            assert field.get(attribute) == REFERENCE_SPEC[name].get(attribute), (name, attribute)


def test_whole_message() -> None:
    codec = IsoCodec()
    codec.receive_data(frames(PURCHASE))
    (message,) = codec.next_messages()
    assert isinstance(message, IsoMessage) and message.verify(MacKey(KEY))
    assert {k: v for k, v in message.fields.items() if k in PURCHASE} == PURCHASE
    request = parse_request(message)
    assert (request.terminal_id, request.stan, request.amount_fen) == ("P0001", "000042", 1234)


def test_byte_by_byte_and_trailing_data() -> None:
    data = frames(PURCHASE, dict(PURCHASE, **{"11": "000043"}))
    codec = IsoCodec()
    out = []
    for offset in range(len(data) - 1):
        codec.receive_data(data[offset : offset + 1])
        out.extend(codec.next_messages())
    assert len(out) == 1  # the second is one byte short
    codec.receive_data(data[-1:] + b"\x00")  # its last byte and the start of a third
    out.extend(codec.next_messages())
    assert [m.fields["11"] for m in out if isinstance(m, IsoMessage)] == ["000042", "000043"]
    assert codec.buffered_bytes == 1


def test_our_encoding_is_what_pyiso8583_decodes() -> None:
    data = encode_message(PURCHASE, MacKey(KEY))
    fields, mac_ok = decode(data[2:], KEY)
    assert mac_ok and {k: v for k, v in fields.items() if k in PURCHASE} == PURCHASE
    assert data == encode(PURCHASE, KEY)  # byte for byte what a pyiso8583 client sends


def test_secondary_bitmap_puts_the_mac_in_de128() -> None:
    message = dict(PURCHASE, t="0400", **{"90": "0200000042113002000000000000000000000000000"[:42]})
    data = encode_message(message, MacKey(KEY))
    decoded = decode_message(data[2:])
    assert "128" in decoded.fields and "64" not in decoded.fields
    assert decoded.verify(MacKey(KEY))


def test_a_wrong_key_fails_the_mac() -> None:
    decoded = decode_message(encode_message(PURCHASE, MacKey(KEY))[2:])
    assert not decoded.verify(MacKey(bytes(16)))


def test_missing_mac_is_a_format_error() -> None:
    raw, _ = iso8583.encode(dict(PURCHASE), SPEC)
    with pytest.raises(RemoteProtocolError) as error:
        decode_message(bytes(raw))
    assert error.value.code is ResponseCode.FORMAT_ERROR


@pytest.mark.parametrize("length", [0, MESSAGE_LENGTH_MIN - 1, MESSAGE_LENGTH_MAX + 1])
def test_bad_length_header_is_fatal(length: int) -> None:
    codec = IsoCodec()
    codec.receive_data(frames(PURCHASE) + struct.pack(">H", length) + b"x" * 20)
    good, bad = codec.next_messages()
    assert isinstance(good, IsoMessage) and isinstance(bad, RejectedMessage)
    assert bad.error.fatal and bad.error.code is ResponseCode.FORMAT_ERROR
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"more")


def test_garbage_inside_a_good_frame_is_not_fatal() -> None:
    codec = IsoCodec()
    body = b"0200" + b"\xff" * 20
    codec.receive_data(struct.pack(">H", len(body)) + body + frames(PURCHASE))
    bad, good = codec.next_messages()
    assert isinstance(bad, RejectedMessage) and not bad.error.fatal and bad.mti == "0200"
    assert isinstance(good, IsoMessage)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_ever_gives_format_errors(data: bytes) -> None:
    codec = IsoCodec()
    try:
        codec.receive_data(data)
    except LocalProtocolError:
        return
    for message in codec.next_messages():
        if isinstance(message, RejectedMessage):
            assert message.error.code in (ResponseCode.FORMAT_ERROR,)
        else:
            try:
                parse_request(message)
            except RemoteProtocolError as exc:
                assert exc.code in (ResponseCode.FORMAT_ERROR, ResponseCode.INVALID_TRANSACTION)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10**12 - 1),
    st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=19),
    st.integers(0, 999_999),
)
def test_round_trip_agrees_with_pyiso8583(amount: int, card: str, stan: int) -> None:
    message = dict(PURCHASE, **{"2": card, "4": f"{amount:012d}", "11": f"{stan:06d}"})
    ours = encode_message(message, MacKey(KEY))
    assert ours == encode(message, KEY)
    decoded = decode_message(ours[2:])
    assert parse_request(decoded).amount_fen == amount


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"4": "00000000123x"}, "30"),
        ({"11": "00004a"}, "30"),
        ({"t": "0300"}, "12"),
        ({"t": "0210"}, "12"),
        ({"7": "113002000x"}, "30"),
    ],
)
def test_parse_request_refuses(changes: dict[str, str], code: str) -> None:
    message = decode_message(encode_message(dict(PURCHASE, **changes), MacKey(KEY))[2:])
    with pytest.raises(RemoteProtocolError) as error:
        parse_request(message)
    assert error.value.code == code


def test_field_helpers() -> None:
    assert response_mti("0200") == "0210" and response_mti("0401") == "0410"
    amounts = additional_amounts([("97", "91", 1_500), ("00", "92", -20)])
    assert parse_additional_amounts(amounts) == [
        ("97", "91", "156", 1_500),
        ("00", "92", "156", -20),
    ]
    assert parse_tlv(tlv({"01": "WATER", "02": "REF-1"})) == {"01": "WATER", "02": "REF-1"}
    with pytest.raises(RemoteProtocolError):
        parse_tlv("01010abc")
    assert transmission_time(1_796_004_000_000) == "1130020000"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def test_protocols_do_no_io() -> None:
    forbidden = {"anyio", "asyncio", "socket", "trio", "time", "asyncpg"}
    for path in (Path(__file__).parents[2] / "protocols" / "iso8583").glob("*.py"):
        assert not _imports(path) & forbidden, path.name


def test_the_switch_runs_without_pyiso8583() -> None:
    """pyiso8583 is the reference for tests and the bench, not a run-time dependency."""
    root = Path(__file__).parents[2]
    for package in ("protocols", "switch", "settlement"):
        for path in (root / package).rglob("*.py"):
            assert "iso8583" not in _imports(path), path
