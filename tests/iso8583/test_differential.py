"""Our ISO 8583 field codec against pyiso8583, the reference, on generated messages.

Every property compares the two on the same input: the same bytes from the same fields,
the same fields from the same bytes, and a refusal from both wherever either refuses
(ours with RemoteProtocolError 30 when decoding, LocalProtocolError when encoding).
Messages are generated over the whole 1987 spec, with extra weight on the fields onecard
uses; malformed input comes from mutating good messages (truncated, trailing bytes, a
byte changed, a bitmap bit flipped, a length prefix replaced by something int() may or
may not read) and from raw bytes. Streams are fed whole, byte by byte and with trailing
data through IsoCodec.
"""

from __future__ import annotations

import iso8583
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from iso8583.specs import default as spec_1987

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.iso8583 import IsoCodec, IsoMessage, RejectedMessage, decode_message
from protocols.iso8583.codec import encode_message
from protocols.iso8583.fields import decode_fields, encode_fields
from protocols.iso8583.framing import LENGTH_HEADER, MESSAGE_LENGTH_MAX
from protocols.iso8583.mac import MacKey
from protocols.iso8583.spec import FIELDS, Length
from tests.iso8583 import client
from tests.iso8583.harness import Harness

KEY = bytes(range(16))
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Data fields: everything but the bitmaps (1, 65).
DATA_FIELDS = [n for n in range(2, 129) if n != 65]
# The fields onecard's messages carry (docs/iso8583.md section 4), weighted in.
USED_FIELDS = [2, 3, 4, 7, 11, 32, 37, 38, 39, 41, 42, 48, 49, 54, 70, 90]
ASCII = st.characters(min_codepoint=0, max_codepoint=127)
# Length prefixes pyiso8583 reads with int(): some it accepts although they are not
# zero-padded digits, some it refuses.
ODD_PREFIXES = [b"+5", b" 5", b"5 ", b"-0", b"-1", b"1_0", b"\x1c5", b"ab", b"\xff1", b"+05"]


def _value(number: int) -> st.SearchStrategy[str]:
    spec = FIELDS[number]
    assert spec is not None
    low = spec.max_len if spec.length is Length.FIXED else 0
    if spec.binary:
        data = st.binary(min_size=low, max_size=spec.max_len)
        return data.map(lambda b: b.hex().upper())
    return st.text(ASCII, min_size=low, max_size=min(spec.max_len, 120))


@st.composite
def messages(draw: st.DrawFn, *, mac: bool = False) -> dict[str, str]:
    """A message over the 1987 spec, in pyiso8583's decoded form."""
    numbers = draw(
        st.one_of(
            st.sets(st.sampled_from(USED_FIELDS), max_size=10),
            st.sets(st.sampled_from(DATA_FIELDS), max_size=10),
        )
    )
    if mac:
        numbers -= {64, 128}
    mti = draw(
        st.one_of(
            st.sampled_from(["0200", "0210", "0400", "0810"]),
            st.text(ASCII, min_size=4, max_size=4),
        )
    )
    out = {"t": mti}
    for number in sorted(numbers):
        out[str(number)] = draw(_value(number))
    return out


def reference_encode(fields: dict[str, str]) -> bytes:
    raw, _ = iso8583.encode(dict(fields), spec_1987)  # encode() changes its argument
    return bytes(raw)


def reference_decode(raw: bytes) -> dict[str, str] | None:
    """pyiso8583's fields, or None where it refuses. A tertiary bitmap naming fields
    129-192 makes it fail with KeyError (the 1987 spec has no such fields): a refusal."""
    try:
        fields, _ = iso8583.decode(raw, spec_1987)
    except (iso8583.DecodeError, KeyError):
        return None
    return fields


def ours_decode(raw: bytes) -> dict[str, str] | None:
    try:
        return decode_fields(raw)
    except RemoteProtocolError as exc:
        assert exc.code is ResponseCode.FORMAT_ERROR and not exc.fatal
        return None


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A good message, then damaged in one of the ways a peer or a line damages them."""
    raw = reference_encode(draw(messages()))
    how = draw(st.sampled_from(["truncate", "trail", "byte", "bit", "prefix", "none"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "trail":
        return raw + draw(st.binary(min_size=1, max_size=8))
    if how == "byte":
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    if how == "bit":  # in the bitmaps: a field appears or disappears
        width = 16 if raw[4] & 0x80 and len(raw) >= 20 else 8
        bit = draw(st.integers(0, width * 8 - 1))
        at = 4 + bit // 8
        return raw[:at] + bytes([raw[at] ^ (0x80 >> bit % 8)]) + raw[at + 1 :]
    if how == "prefix":  # the first length prefix, whatever it is, replaced
        at = draw(st.integers(12, max(12, len(raw) - 2)))
        odd = draw(st.sampled_from(ODD_PREFIXES))
        return raw[:at] + odd + raw[at + len(odd) :]
    return raw


@pytest.fixture(scope="module")
def harness() -> Harness:
    """One acquirer core for every example: building demo data per example would dominate.
    Each example sends a new STAN, so none is a duplicate of another."""
    return Harness()


# -- encoding --------------------------------------------------------------------------------


@EXAMPLES
@given(messages())
def test_encode_is_pyiso8583s_byte_for_byte(fields: dict[str, str]) -> None:
    assert encode_fields(fields) == reference_encode(fields)


@EXAMPLES
@given(messages(mac=True).filter(lambda m: m["t"].isdigit()))
def test_encode_message_is_what_a_pyiso8583_client_sends(fields: dict[str, str]) -> None:
    try:
        ours = encode_message(fields, MacKey(KEY))
    except LocalProtocolError:
        # Only for a message framing cannot carry; pyiso8583 has no framing to refuse it.
        assert len(client.encode(fields, KEY)) - 2 > MESSAGE_LENGTH_MAX
        return
    assert ours == client.encode(fields, KEY)


@st.composite
def bad_values(draw: st.DrawFn) -> dict[str, str]:
    """A message with one value that does not fit its field."""
    fields = draw(messages())
    number = draw(st.sampled_from(DATA_FIELDS))
    spec = FIELDS[number]
    assert spec is not None
    if spec.binary:
        wrong = st.one_of(
            st.just("ABC"),  # odd length
            st.just("GG" * spec.max_len),  # not hex
            st.binary(min_size=spec.max_len + 1, max_size=spec.max_len + 3).map(bytes.hex),
        )
    else:
        too_long = st.text(ASCII, min_size=spec.max_len + 1, max_size=spec.max_len + 3)
        wrong = st.one_of(too_long, st.just("é" * min(spec.max_len, 1)))
        if spec.length is Length.FIXED and spec.max_len > 1:
            wrong = st.one_of(wrong, st.text(ASCII, min_size=0, max_size=spec.max_len - 1))
    fields[str(number)] = draw(wrong)
    return fields


@EXAMPLES
@given(bad_values())
def test_both_refuse_to_encode_what_does_not_fit(fields: dict[str, str]) -> None:
    with pytest.raises(iso8583.EncodeError):
        reference_encode(fields)
    with pytest.raises(LocalProtocolError):
        encode_fields(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"2": "X1"},  # no MTI
        {"t": "020"},
        {"t": "02000"},
        {"t": "02é0"},
        {"t": "0200", "0": "1"},
        {"t": "0200", "129": "1"},
    ],
)
def test_both_refuse_to_encode_bad_messages(fields: dict[str, str]) -> None:
    with pytest.raises((iso8583.EncodeError, KeyError)):
        reference_encode(fields)
    with pytest.raises(LocalProtocolError):
        encode_fields(fields)


def test_bitmap_fields_in_the_input_are_ignored_like_pyiso8583_does() -> None:
    fields = {"t": "0200", "1": "FF" * 8, "65": "FF" * 8, "p": "00" * 8, "3": "000000"}
    assert encode_fields(fields) == reference_encode(fields)


# -- decoding --------------------------------------------------------------------------------


@EXAMPLES
@given(messages())
def test_decode_gives_pyiso8583s_fields(fields: dict[str, str]) -> None:
    raw = reference_encode(fields)
    assert decode_fields(raw) == reference_decode(raw)


@EXAMPLES
@given(st.one_of(mutated(), st.binary(max_size=64)))
@example(b"0200" + bytes([0x80]) + bytes(7) + bytes([0x80]) + bytes(7) + bytes(8))
@example(b"0200" + bytes([0x80]) + bytes(7) + bytes([0x80]) + bytes(7) + b"\x01" + bytes(7))
@example(b"0200" + bytes([0x40]) + bytes(7) + b"+5X0001")
@example(b"0200" + bytes([0x40]) + bytes(7) + b"-0")
@example(b"0200" + bytes([0x40]) + bytes(7) + b"1_0X00000001")
@example(b"0200" + bytes([0x40]) + bytes(7) + b"20" + b"X" * 20)  # DE2 over its 19
@example(b"0200" + bytes([0x40]) + bytes(7) + b"19" + b"X" * 19)  # DE2 at its 19
def test_decode_agrees_on_damaged_input(raw: bytes) -> None:
    """Both accept with the same fields, or both refuse."""
    assert ours_decode(raw) == reference_decode(raw)


@EXAMPLES
@given(st.lists(messages(mac=True).filter(lambda m: m["t"].isdigit()), min_size=1, max_size=4))
def test_streams_whole_byte_by_byte_and_with_trailing_data(
    batch: list[dict[str, str]],
) -> None:
    data = b""
    for fields in batch:
        try:
            data += encode_message(fields, MacKey(KEY))
        except LocalProtocolError:
            assume(False)  # too long to frame
    expected = [reference_decode(framed[2:]) for framed in _frames(data)]
    whole = IsoCodec()
    whole.receive_data(data)
    assert [m.fields for m in _decoded(whole.next_messages())] == expected
    one_by_one = IsoCodec()
    out = []
    for offset in range(len(data)):
        one_by_one.receive_data(data[offset : offset + 1])
        out.extend(one_by_one.next_messages())
    assert [m.fields for m in _decoded(out)] == expected
    trailing = IsoCodec()
    trailing.receive_data(data + data[:3])  # a length header and a byte of the next
    assert [m.fields for m in _decoded(trailing.next_messages())] == expected
    assert trailing.buffered_bytes == 3


def _frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        (length,) = LENGTH_HEADER.unpack_from(data)
        out.append(data[: LENGTH_HEADER.size + length])
        data = data[LENGTH_HEADER.size + length :]
    return out


def _decoded(messages_: list[IsoMessage | RejectedMessage]) -> list[IsoMessage]:
    assert all(isinstance(m, IsoMessage) for m in messages_), messages_
    return [m for m in messages_ if isinstance(m, IsoMessage)]


@EXAMPLES
@given(mutated())
def test_the_switch_answers_30_to_what_neither_decodes_and_keeps_serving(
    harness: Harness, raw: bytes
) -> None:
    """Garbage inside a sound frame: answered 30 (unsigned), and the next request on the
    same connection is served as if nothing had happened."""
    assume(reference_decode(raw) is None and len(raw) >= 12)
    echo = harness.message("0800", de70="301")
    codec = IsoCodec()
    codec.receive_data(LENGTH_HEADER.pack(len(raw)) + raw)
    codec.receive_data(client.encode(echo, harness.keys.terminals["P0001"]))
    before = len(harness.sink.frames)
    harness.run(harness.acquirer.requests(codec.next_messages(), harness.sink, harness.now_ms))
    refused, served = harness.sink.frames[before:]
    refused_fields, _ = client.decode(refused[2:], KEY)
    assert refused_fields["39"] == ResponseCode.FORMAT_ERROR
    assert refused_fields["64"] == "00" * 8  # unsigned: we do not know who sent it
    served_fields, mac_ok = client.decode(served[2:], harness.keys.terminals["P0001"])
    assert mac_ok and (served_fields["11"], served_fields["39"]) == (echo["11"], "00")


def test_an_oversized_length_header_is_fatal() -> None:
    """Framing is ours alone (pyiso8583 has none): a length beyond MESSAGE_LENGTH_MAX ends
    the stream, since nothing after it can be trusted to start a message."""
    codec = IsoCodec()
    codec.receive_data(LENGTH_HEADER.pack(MESSAGE_LENGTH_MAX + 1) + b"0200")
    (rejected,) = codec.next_messages()
    assert isinstance(rejected, RejectedMessage) and rejected.error.fatal


def test_decode_message_refuses_what_decode_fields_accepts_without_a_mac() -> None:
    raw = reference_encode({"t": "0200", "3": "000000"})
    assert decode_fields(raw) == reference_decode(raw)
    with pytest.raises(RemoteProtocolError):
        decode_message(raw)
