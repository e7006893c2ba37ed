"""Terminal protocol v1 codec, without I/O: bytes in, frames out (h11-style test vectors).

Every request is fed whole, one byte at a time and followed by part of the next frame;
malformed bodies must give a non-fatal format error, bad length prefixes a fatal one, and
arbitrary bytes nothing else. docs/protocol.md's worked example and response-code table are
checked against the code.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.codes import DESCRIPTIONS, ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.terminal import (
    FRAME_LENGTH_MAX,
    KEY_SIZE,
    MAC_SIZE,
    Balance,
    ClientCodec,
    Echo,
    MacKey,
    Purchase,
    RejectedFrame,
    Request,
    RequestFrame,
    Response,
    Reversal,
    ServerCodec,
    Tap,
    encode_request,
    encode_response,
)
from protocols.terminal.codec import FRAME_LENGTH_MIN, LENGTH_PREFIX_SIZE

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
KEY = MacKey(bytes(range(KEY_SIZE)))
OTHER_KEY = MacKey(bytes(KEY_SIZE))
TIME_MS = 1_764_400_000_000

REQUESTS: list[Request] = [
    Tap("G0001", 1, TIME_MS, "X00000001"),
    Purchase("P0001", 2, TIME_MS, "X00000001", 350),
    Reversal("P0001", 3, TIME_MS, 2),
    Balance("G0001", 4, TIME_MS, "X00000001"),
    Echo("G0001", 5, TIME_MS),
]
REQUEST_IDS = [type(request).__name__ for request in REQUESTS]
NEXT_FRAME = encode_request(Echo("G0002", 99, TIME_MS), KEY)


def raw_frame(body: bytes, mac: bytes = bytes(MAC_SIZE)) -> bytes:
    """A correctly framed body, whatever the body holds."""
    return (len(body) + len(mac)).to_bytes(LENGTH_PREFIX_SIZE, "big") + body + mac


def length_prefix(length: int) -> bytes:
    return length.to_bytes(LENGTH_PREFIX_SIZE, "big")


def feed(codec: ServerCodec, data: bytes) -> list[RequestFrame | RejectedFrame]:
    codec.receive_data(data)
    return codec.next_frames()


def only_request(frames: list[RequestFrame | RejectedFrame]) -> RequestFrame:
    assert len(frames) == 1
    frame = frames[0]
    assert isinstance(frame, RequestFrame)
    return frame


def only_rejected(frames: list[RequestFrame | RejectedFrame]) -> RejectedFrame:
    assert len(frames) == 1
    frame = frames[0]
    assert isinstance(frame, RejectedFrame)
    return frame


def assert_is(frame: RequestFrame | RejectedFrame, request: Request, data: bytes) -> None:
    assert isinstance(frame, RequestFrame)
    assert frame.request == request
    assert frame.body == data[LENGTH_PREFIX_SIZE:-MAC_SIZE]
    assert frame.mac == data[-MAC_SIZE:]
    assert KEY.verify(frame.body, frame.mac)


# -- well-formed requests, however the bytes arrive ---------------------------------------


@pytest.mark.parametrize("request_", REQUESTS, ids=REQUEST_IDS)
def test_request_whole(request_: Request) -> None:
    codec = ServerCodec()
    data = encode_request(request_, KEY)
    assert_is(only_request(feed(codec, data)), request_, data)
    assert codec.buffered_bytes == 0


@pytest.mark.parametrize("request_", REQUESTS, ids=REQUEST_IDS)
def test_request_one_byte_at_a_time(request_: Request) -> None:
    codec = ServerCodec()
    data = encode_request(request_, KEY)
    for index in range(len(data) - 1):
        assert feed(codec, data[index : index + 1]) == []
    assert_is(only_request(feed(codec, data[-1:])), request_, data)
    assert codec.buffered_bytes == 0


@pytest.mark.parametrize("request_", REQUESTS, ids=REQUEST_IDS)
@pytest.mark.parametrize("partial", [1, LENGTH_PREFIX_SIZE, len(NEXT_FRAME) - 1])
def test_request_with_trailing_partial_frame(request_: Request, partial: int) -> None:
    codec = ServerCodec()
    data = encode_request(request_, KEY)
    assert_is(only_request(feed(codec, data + NEXT_FRAME[:partial])), request_, data)
    assert codec.buffered_bytes == partial
    following = only_request(feed(codec, NEXT_FRAME[partial:]))
    assert following.request == Echo("G0002", 99, TIME_MS)
    assert codec.buffered_bytes == 0


def test_several_frames_in_one_read() -> None:
    codec = ServerCodec()
    frames = feed(codec, b"".join(encode_request(request, KEY) for request in REQUESTS))
    assert len(frames) == len(REQUESTS)
    for frame, request in zip(frames, REQUESTS, strict=True):
        assert_is(frame, request, encode_request(request, KEY))


def test_frames_split_across_reads_anywhere() -> None:
    data = b"".join(encode_request(request, KEY) for request in REQUESTS)
    for cut in range(len(data) + 1):
        codec = ServerCodec()
        frames = feed(codec, data[:cut]) + feed(codec, data[cut:])
        assert [only_request([frame]).request for frame in frames] == REQUESTS


def test_unknown_trailing_elements_are_ignored() -> None:
    body = msgspec.msgpack.encode(["tap", "G0001", 1, TIME_MS, "X00000001", "", "v2 field", 7])
    frame = only_request(feed(ServerCodec(), raw_frame(body, KEY.sign(body))))
    assert frame.request == Tap("G0001", 1, TIME_MS, "X00000001")
    assert frame.body == body
    assert KEY.verify(frame.body, frame.mac)


def test_mac_is_carried_not_checked() -> None:
    # The key belongs to the engine: a wrong MAC still decodes, and the engine answers 63.
    data = encode_request(REQUESTS[0], OTHER_KEY)
    frame = only_request(feed(ServerCodec(), data))
    assert not KEY.verify(frame.body, frame.mac)


# -- malformed bodies: a non-fatal format error ---------------------------------------------

WRONG_SHAPES: list[tuple[str, bytes, int, str | None]] = [
    # (id, body, seq salvaged, terminal id salvaged)
    ("card-not-str", msgspec.msgpack.encode(["tap", "G0001", 7, 0, 5]), 7, "G0001"),
    ("card-missing", msgspec.msgpack.encode(["tap", "G0001", 7, 0]), 7, "G0001"),
    ("amount-missing", msgspec.msgpack.encode(["purchase", "P0001", 7, 0, "X"]), 7, "P0001"),
    ("amount-float", msgspec.msgpack.encode(["purchase", "P0001", 7, 0, "X", 3.5]), 7, "P0001"),
    (
        "amount-integral-float",
        msgspec.msgpack.encode(["purchase", "P0001", 7, 0, "X", 350.0]),
        7,
        "P0001",
    ),
    ("amount-str", msgspec.msgpack.encode(["purchase", "P0001", 7, 0, "X", "350"]), 7, "P0001"),
    ("unknown-tag", msgspec.msgpack.encode(["refund", "P0001", 7, 0, "X", 350]), 7, "P0001"),
    ("tag-only", msgspec.msgpack.encode(["tap"]), 0, None),
    ("empty-array", msgspec.msgpack.encode([]), 0, None),
    (
        "map",
        msgspec.msgpack.encode(
            {"tag": "tap", "terminal_id": "G0001", "seq": 7, "terminal_time_ms": 0, "card": "X"}
        ),
        0,
        None,
    ),
    ("int-not-array", msgspec.msgpack.encode(7), 0, None),
    ("seq-zero", msgspec.msgpack.encode(["tap", "G0001", 0, 0, "X"]), 0, "G0001"),
    ("seq-negative", msgspec.msgpack.encode(["tap", "G0001", -7, 0, "X"]), 0, "G0001"),
    ("seq-above-max", msgspec.msgpack.encode(["tap", "G0001", 2**63, 0, "X"]), 0, "G0001"),
    ("seq-bool", msgspec.msgpack.encode(["tap", "G0001", True, 0, "X"]), 0, "G0001"),
    ("seq-float", msgspec.msgpack.encode(["tap", "G0001", 7.0, 0, "X"]), 0, "G0001"),
    ("terminal-empty", msgspec.msgpack.encode(["tap", "", 7, 0, "X"]), 7, None),
    ("terminal-too-long", msgspec.msgpack.encode(["tap", "G" * 17, 7, 0, "X"]), 7, None),
    ("terminal-bin", msgspec.msgpack.encode(["tap", b"G0001", 7, 0, "X"]), 7, None),
    ("terminal-nil", msgspec.msgpack.encode(["tap", None, 7, 0, "X"]), 7, None),
    ("time-negative", msgspec.msgpack.encode(["tap", "G0001", 7, -1, "X"]), 7, "G0001"),
    ("card-too-long", msgspec.msgpack.encode(["tap", "G0001", 7, 0, "X" * 33]), 7, "G0001"),
    ("original-seq-zero", msgspec.msgpack.encode(["reversal", "P0001", 7, 0, 0]), 7, "P0001"),
    ("bytes-after-array", msgspec.msgpack.encode(["echo", "G0001", 7, 0]) + b"\x00", 0, None),
    ("truncated-array", msgspec.msgpack.encode(["echo", "G0001", 7, 0])[:-1], 0, None),
    ("not-msgpack", b"\xc1", 0, None),
]


@pytest.mark.parametrize(
    ("body", "seq", "terminal_id"),
    [
        pytest.param(body, seq, terminal_id, id=name)
        for name, body, seq, terminal_id in WRONG_SHAPES
    ],
)
def test_wrong_shape_is_a_non_fatal_format_error(
    body: bytes, seq: int, terminal_id: str | None
) -> None:
    codec = ServerCodec()
    data = raw_frame(body)
    good = encode_request(REQUESTS[0], KEY)
    frames = feed(codec, data + good)
    assert len(frames) == 2
    rejected = frames[0]
    assert isinstance(rejected, RejectedFrame)
    assert rejected.error.code is ResponseCode.FORMAT_ERROR
    assert not rejected.error.fatal
    assert rejected.seq == seq
    assert rejected.terminal_id == terminal_id
    # The stream is still in step: the next frame decodes, and more data is welcome.
    assert_is(frames[1], REQUESTS[0], good)
    assert feed(codec, good) != []


@pytest.mark.parametrize(
    "body", [body for _, body, _, _ in WRONG_SHAPES], ids=[name for name, *_ in WRONG_SHAPES]
)
def test_wrong_shape_one_byte_at_a_time(body: bytes) -> None:
    codec = ServerCodec()
    data = raw_frame(body)
    frames: list[RequestFrame | RejectedFrame] = []
    for index in range(len(data)):
        frames += feed(codec, data[index : index + 1])
    assert not only_rejected(frames).error.fatal


# -- bad length prefixes: fatal ----------------------------------------------------------


@pytest.mark.parametrize(
    "length",
    [0, 1, FRAME_LENGTH_MIN - 1, FRAME_LENGTH_MAX + 1, 2**32 - 1],
    ids=["zero", "one", "below-min", "above-max", "u32-max"],
)
def test_bad_length_prefix_is_fatal(length: int) -> None:
    codec = ServerCodec()
    rejected = only_rejected(feed(codec, length_prefix(length) + b"\x95" * 20))
    assert isinstance(rejected.error, RemoteProtocolError)
    assert rejected.error.code is ResponseCode.FORMAT_ERROR
    assert rejected.error.fatal
    assert rejected.seq == 0
    assert rejected.terminal_id is None
    assert codec.buffered_bytes == 0
    assert codec.next_frames() == []
    with pytest.raises(LocalProtocolError):
        codec.receive_data(encode_request(REQUESTS[0], KEY))


def test_bad_length_prefix_one_byte_at_a_time() -> None:
    codec = ServerCodec()
    prefix = length_prefix(FRAME_LENGTH_MAX + 1)
    for index in range(LENGTH_PREFIX_SIZE - 1):
        assert feed(codec, prefix[index : index + 1]) == []
    assert only_rejected(feed(codec, prefix[-1:])).error.fatal
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"\x00")


def test_good_frames_before_a_fatal_one_are_still_returned() -> None:
    codec = ServerCodec()
    good = [encode_request(request, KEY) for request in REQUESTS[:2]]
    frames = feed(codec, b"".join(good) + length_prefix(0) + encode_request(REQUESTS[2], KEY))
    assert len(frames) == 3
    assert_is(frames[0], REQUESTS[0], good[0])
    assert_is(frames[1], REQUESTS[1], good[1])
    last = frames[2]
    assert isinstance(last, RejectedFrame)
    assert last.error.fatal
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"")


def test_length_limits_themselves_are_accepted() -> None:
    smallest = raw_frame(b"\x90")  # an empty array: framed fine, a format error inside
    assert length_prefix(FRAME_LENGTH_MIN) == smallest[:LENGTH_PREFIX_SIZE]
    assert not only_rejected(feed(ServerCodec(), smallest)).error.fatal

    # A tap padded with an unknown trailing element up to the largest frame.
    prefix = ["tap", "G0001", 1, 0, "", ""]
    padding = FRAME_LENGTH_MAX - MAC_SIZE - len(msgspec.msgpack.encode(prefix))
    padding -= len(msgspec.msgpack.encode("x" * padding)) - padding  # the str header
    body = msgspec.msgpack.encode([*prefix, "x" * padding])
    largest = raw_frame(body)
    assert largest[:LENGTH_PREFIX_SIZE] == length_prefix(FRAME_LENGTH_MAX)
    assert only_request(feed(ServerCodec(), largest)).request == Tap("G0001", 1, 0, "")


# -- the terminal's side -------------------------------------------------------------------

APPROVAL = Response(1, "00", 200, 19800, 1, TIME_MS + 123)


def test_client_round_trip() -> None:
    client = ClientCodec(KEY)
    data = client.send(REQUESTS[0])
    assert data == encode_request(REQUESTS[0], KEY)
    frame = only_request(feed(ServerCodec(), data))
    assert frame.request == REQUESTS[0]

    client.receive_data(encode_response(APPROVAL, KEY))
    assert client.next_responses() == [(APPROVAL, True)]
    assert client.buffered_bytes == 0


def test_client_responses_one_byte_at_a_time_and_several_per_read() -> None:
    responses = [APPROVAL, Response(2, "51", 0, 100, 2, TIME_MS), Response(3, "94")]
    data = b"".join(encode_response(response, KEY) for response in responses)
    client = ClientCodec(KEY)
    received: list[tuple[Response, bool]] = []
    for index in range(len(data)):
        client.receive_data(data[index : index + 1])
        received += client.next_responses()
    assert received == [(response, True) for response in responses]

    client.receive_data(data)
    assert client.next_responses() == received


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode_response(APPROVAL, OTHER_KEY), id="other-key"),
        pytest.param(encode_response(APPROVAL, None), id="zero-mac"),
        pytest.param(
            encode_response(APPROVAL, KEY).replace(b"\xa2\x30\x30", b"\xa2\x30\x35"),
            id="body-altered",
        ),
        pytest.param(encode_response(APPROVAL, KEY)[:-1] + b"\x00", id="mac-altered"),
    ],
)
def test_client_detects_mac_failure(data: bytes) -> None:
    client = ClientCodec(KEY)
    client.receive_data(data)
    [(_response, mac_ok)] = client.next_responses()
    assert not mac_ok


def test_unauthenticated_answers_carry_an_all_zero_mac() -> None:
    data = encode_response(Response(0, ResponseCode.FORMAT_ERROR.value), None)
    assert data[-MAC_SIZE:] == bytes(MAC_SIZE)


def test_client_ignores_unknown_trailing_response_elements() -> None:
    body = msgspec.msgpack.encode([1, "00", 200, 19800, 1, TIME_MS + 123, "v2 field"])
    client = ClientCodec(KEY)
    client.receive_data(raw_frame(body, KEY.sign(body)))
    assert client.next_responses() == [(APPROVAL, True)]


def test_client_undecodable_response_raises_remote_error() -> None:
    client = ClientCodec(KEY)
    client.receive_data(raw_frame(b"\xc1"))
    with pytest.raises(RemoteProtocolError) as caught:
        client.next_responses()
    assert caught.value.code is ResponseCode.FORMAT_ERROR


def test_client_bad_length_prefix_is_fatal() -> None:
    client = ClientCodec(KEY)
    client.receive_data(length_prefix(0))
    with pytest.raises(RemoteProtocolError) as caught:
        client.next_responses()
    assert caught.value.fatal
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"")


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 8, KEY_SIZE - 1, KEY_SIZE + 1, 32])
def test_mac_key_rejects_wrong_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        MacKey(bytes(size))


@given(st.binary(max_size=300), st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE))
def test_mac_is_the_first_bytes_of_hmac_sha256(body: bytes, key: bytes) -> None:
    expected = hmac.new(key, body, hashlib.sha256).digest()[:MAC_SIZE]
    assert MacKey(key).sign(body) == expected


def test_mac_sign_and_verify() -> None:
    mac = KEY.sign(b"body")
    assert len(mac) == MAC_SIZE
    assert KEY.verify(b"body", mac)
    assert not KEY.verify(b"bodY", mac)
    assert not KEY.verify(b"body", mac[:-1])
    assert not OTHER_KEY.verify(b"body", mac)


# -- fuzz: garbage only ever gives frames, or LocalProtocolError after a fatal one ----------

valid_frames = st.sampled_from([encode_request(request, KEY) for request in REQUESTS])
framed_garbage = st.binary(min_size=1, max_size=40).map(raw_frame)
framed_wrong_shapes = st.sampled_from([raw_frame(body) for _, body, _, _ in WRONG_SHAPES])
prefixes = st.integers(0, 2**32 - 1).map(length_prefix)
streams = st.lists(
    st.one_of(valid_frames, framed_garbage, framed_wrong_shapes, prefixes, st.binary(max_size=40)),
    max_size=8,
).map(b"".join)


def summary(frame: RequestFrame | RejectedFrame) -> tuple[Any, ...]:
    if isinstance(frame, RequestFrame):
        return ("request", frame.request, frame.body, frame.mac)
    return ("rejected", frame.error.code, frame.error.fatal, frame.seq, frame.terminal_id)


def feed_in_chunks(data: bytes, sizes: list[int]) -> list[RequestFrame | RejectedFrame]:
    """Feed `data` in chunks of the given sizes (the rest at the end), as a server would:
    stop at the first fatal frame and check that the codec then refuses data."""
    codec = ServerCodec()
    chunks: list[bytes] = []
    offset = 0
    for size in sizes:
        chunks.append(data[offset : offset + size])
        offset += size
    chunks.append(data[offset:])
    frames: list[RequestFrame | RejectedFrame] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        got = codec.next_frames()
        for frame in got:
            assert type(frame) in (RequestFrame, RejectedFrame)
        frames += got
        if frames and isinstance(frames[-1], RejectedFrame) and frames[-1].error.fatal:
            with pytest.raises(LocalProtocolError):
                codec.receive_data(b"\x00")
            break
    return frames


@given(streams, st.lists(st.integers(min_value=0, max_value=50), max_size=20))
def test_fuzz_server_codec(data: bytes, sizes: list[int]) -> None:
    frames = feed_in_chunks(data, sizes)
    for index, frame in enumerate(frames):
        if isinstance(frame, RejectedFrame):
            assert frame.error.code is ResponseCode.FORMAT_ERROR
            assert not frame.error.fatal or index == len(frames) - 1
            assert 0 <= frame.seq < 2**63
    # How the bytes were cut never changes what they mean.
    assert [summary(frame) for frame in frames] == [
        summary(frame) for frame in feed_in_chunks(data, [])
    ]


# -- the package stays free of I/O -------------------------------------------------------

FORBIDDEN_IMPORTS = frozenset({"socket", "asyncio", "anyio", "trio", "asyncpg", "time", "os", "io"})


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            modules.add(node.module.split(".")[0])
    return modules


def test_protocols_import_no_io() -> None:
    paths = sorted((ROOT / "protocols").rglob("*.py"))
    assert len(paths) >= 5
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN_IMPORTS)
        for path in paths
    }
    assert {path: found for path, found in offenders.items() if found} == {}


# -- docs/protocol.md agrees with the code ------------------------------------------------

EXAMPLE_BLOCK = re.compile(r"<!-- example: ([\w-]+) -->\s*```\w*\n(.*?)```", re.DOTALL)


def doc_examples() -> dict[str, bytes]:
    """The `<!-- example: NAME -->` hex blocks of the protocol doc; `#` starts a comment."""
    examples: dict[str, bytes] = {}
    for name, block in EXAMPLE_BLOCK.findall(PROTOCOL_DOC.read_text()):
        examples[name] = bytes.fromhex(
            "".join(line.split("#", 1)[0] for line in block.splitlines())
        )
    return examples


def test_doc_worked_example_request_matches_the_code() -> None:
    examples = doc_examples()
    key = MacKey(examples["key"])
    assert examples["key"] == bytes(range(KEY_SIZE))
    frame = encode_request(Tap("G0001", 1, 1_764_400_000_000, "X00000001"), key)
    assert examples["tap-request-frame"] == frame
    assert examples["tap-request-body"] == frame[LENGTH_PREFIX_SIZE:-MAC_SIZE]
    assert examples["tap-request-mac"] == frame[-MAC_SIZE:]


def test_doc_worked_example_response_matches_the_code() -> None:
    examples = doc_examples()
    key = MacKey(examples["key"])
    frame = encode_response(Response(1, "00", 200, 19800, 1, 1_764_400_000_123), key)
    assert examples["approval-response-frame"] == frame
    assert examples["approval-response-body"] == frame[LENGTH_PREFIX_SIZE:-MAC_SIZE]
    assert examples["approval-response-mac"] == frame[-MAC_SIZE:]
    client = ClientCodec(key)
    client.receive_data(examples["approval-response-frame"])
    assert client.next_responses() == [(Response(1, "00", 200, 19800, 1, 1_764_400_000_123), True)]


def doc_response_code_rows() -> dict[str, list[str]]:
    """Code → cells of the rows of the doc's response-code table (`| `00` | APPROVED | …`)."""
    rows: dict[str, list[str]] = {}
    for line in PROTOCOL_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`\d\d`", cells[0]):
            rows[cells[0].strip("`")] = cells
    return rows


def test_doc_response_code_table_lists_every_code() -> None:
    rows = doc_response_code_rows()
    assert set(rows) == {code.value for code in ResponseCode}
    for code in ResponseCode:
        assert rows[code.value][1] == code.name
        assert rows[code.value][2] == DESCRIPTIONS[code]
