"""The terminal channel end to end over real TCP, on uvloop and on trio."""

from __future__ import annotations

import struct
import urllib.request

import anyio
import msgspec
import pytest

from protocols.codes import ResponseCode as C
from protocols.terminal import FRAME_LENGTH_MAX, MAC_SIZE, MacKey, Response
from protocols.terminal.codec import encode_request
from switch.client import ClosedByServer, TerminalClient
from tests.conftest import Running

pytestmark = pytest.mark.anyio

FULL = 20_000
FARE = 200


async def connect(running: Running, terminal: str = "G0001", seq: int = 1) -> TerminalClient:
    return await TerminalClient.connect(
        running.host, running.port, terminal, running.keys.terminals[terminal], seq
    )


async def balance(running: Running, card: str) -> int | None:
    async with await connect(running, "P0008", seq=10**9) as client:
        return (await client.request(client.balance(card))).balance_fen


async def assert_still_serving(running: Running) -> None:
    async with await connect(running, "G0016", seq=10**12) as client:
        assert (await client.request(client.echo())).code == C.APPROVED


async def test_approval_and_declines(running: Running) -> None:
    async with await connect(running) as client:
        answers = await client.pipeline(
            [
                client.tap("X00000001"),
                client.tap("X00000002"),
                client.tap("X00000003"),
                client.tap("X00000005"),
                client.tap("X00000006"),
                client.tap("X00000007"),
                client.tap("XXXXXXXXX"),
            ]
        )
    codes = [answers[seq].code for seq in sorted(answers)]
    assert codes == ["00", "41", "41", "14", "14", "51", "14"]
    assert answers[1].balance_fen == FULL - FARE and client.mac_failures == 0


async def test_purchase_amounts(running: Running) -> None:
    async with await connect(running, "P0001") as client:
        answers = await client.pipeline(
            [
                client.purchase("X00000010", 0),
                client.purchase("X00000010", -100),
                client.purchase("X00000010", 2**64 - 1),
                client.purchase("X00000010", 20_001),
                client.purchase("X00000010", 1_234),
            ]
        )
    assert [answers[s].code for s in sorted(answers)] == ["13", "13", "61", "61", "00"]
    assert await balance(running, "X00000010") == FULL - 1_234


async def test_retry_after_reconnect_moves_money_once(running: Running) -> None:
    async with await connect(running, "G0002", seq=50) as client:
        first = await client.request(client.tap("X00000011"))
    async with await connect(running, "G0002") as client:  # the gate reconnects, retries
        again = await client.request(client.tap("X00000011", seq=50))
    assert again == first and first.code == C.APPROVED
    assert await balance(running, "X00000011") == FULL - FARE


async def test_same_seq_other_card_is_refused(running: Running) -> None:
    async with await connect(running, "G0003") as client:
        assert (await client.request(client.tap("X00000012", seq=9))).code == C.APPROVED
        assert (await client.request(client.tap("X00000013", seq=9))).code == "94"
    assert await balance(running, "X00000013") == FULL


async def test_pipelined_requests_are_matched_by_seq(running: Running) -> None:
    cards = [f"X{n:08d}" for n in range(20, 60)]
    async with await connect(running, "P0004") as client:
        requests = [client.purchase(cards[i % len(cards)], 7) for i in range(400)]
        answers = await client.pipeline(requests)
    assert sorted(answers) == [r.seq for r in requests]
    assert all(a.code == C.APPROVED for a in answers.values())
    assert len({a.reference for a in answers.values()}) == 400
    assert await balance(running, "X00000020") == FULL - 10 * 7


async def test_reversal_restores_once_and_is_idempotent(running: Running) -> None:
    async with await connect(running, "P0002") as client:
        purchase = await client.request(client.purchase("X00000014", 777))
        reversal = client.reversal(purchase.seq)
        first = await client.request(reversal)
        assert await client.request(reversal) == first  # retried: same answer
        second = await client.request(client.reversal(purchase.seq))
    assert (first.code, first.amount_fen, first.balance_fen) == ("00", 777, FULL)
    assert second.code == C.DUPLICATE_TRANSMISSION
    assert await balance(running, "X00000014") == FULL


async def test_unknown_terminal_and_wrong_mac(running: Running) -> None:
    async with await anyio.connect_tcp(running.host, running.port) as stream:
        client = TerminalClient(stream, "G0099", bytes(16))
        unknown = await client.request(client.tap("X00000015"))
        forged = encode_request(
            msgspec.structs.replace(client.tap("X00000015"), terminal_id="G0005"), MacKey(bytes(16))
        )
        await client.send_raw(forged)
        wrong_mac = await client.receive()
    assert unknown.code == C.INVALID_MERCHANT and wrong_mac.code == C.SECURITY_VIOLATION
    assert client.unverified == {unknown.seq, wrong_mac.seq}  # both unsigned
    assert await balance(running, "X00000015") == FULL
    await assert_still_serving(running)


async def test_wrong_shape_gets_30_with_its_seq_and_the_connection_stays(running: Running) -> None:
    key = MacKey(running.keys.terminals["G0006"])
    bodies = [
        msgspec.msgpack.encode(["tap", "G0006", 5, 0]),  # missing card
        msgspec.msgpack.encode(["tap", "G0006", 6, 0, 12345]),  # card as int
        msgspec.msgpack.encode(["fly", "G0006", 7, 0, "X00000016"]),  # unknown tag
        msgspec.msgpack.encode(["purchase", "G0006", 8, 0, "X00000016", 1.5]),  # float fen
        msgspec.msgpack.encode({"tap": 1}),  # a map
        b"\xc1",  # never-used MessagePack byte
    ]
    frames = b"".join(
        struct.pack(">I", len(body) + MAC_SIZE) + body + key.sign(body) for body in bodies
    )
    async with await connect(running, "G0006", seq=100) as client:
        await client.send_raw(frames)
        answers = [await client.receive() for _ in bodies]
        assert [a.code for a in answers] == ["30"] * len(bodies)
        assert [a.seq for a in answers] == [5, 6, 7, 8, 0, 0]
        assert (await client.request(client.tap("X00000016"))).code == C.APPROVED
    assert await balance(running, "X00000016") == FULL - FARE


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", FRAME_LENGTH_MAX + 1) + b"x" * 16,  # oversized length prefix
        struct.pack(">I", 0),  # empty frame
        struct.pack(">I", 3) + b"abc",  # shorter than a MAC
        bytes(range(256)) * 4,  # random bytes: the prefix reads as 66051
        b"\xff" * 64,
    ],
    ids=["oversized", "zero", "short", "ramp", "ff"],
)
async def test_unframeable_bytes_get_30_then_close(running: Running, garbage: bytes) -> None:
    async with await connect(running, "G0007") as client:
        await client.send_raw(garbage)
        answer = await client.receive()
        assert (answer.code, answer.seq) == ("30", 0)
        with pytest.raises(ClosedByServer):
            await client.receive()
    await assert_still_serving(running)


async def test_good_frames_before_garbage_are_answered(running: Running) -> None:
    async with await connect(running, "G0008") as client:
        good = encode_request(client.tap("X00000017"), MacKey(running.keys.terminals["G0008"]))
        await client.send_raw(good + struct.pack(">I", 2**31))
        assert (await client.receive()).code == C.APPROVED
        assert (await client.receive()).code == C.FORMAT_ERROR
    assert await balance(running, "X00000017") == FULL - FARE


async def test_truncated_frame_then_hang_up(running: Running) -> None:
    async with await connect(running, "G0009") as client:
        frame = encode_request(client.tap("X00000018"), MacKey(running.keys.terminals["G0009"]))
        await client.send_raw(frame[: len(frame) // 2])
    await assert_still_serving(running)
    assert await balance(running, "X00000018") == FULL


async def test_frame_split_across_many_writes(running: Running) -> None:
    async with await connect(running, "G0010") as client:
        frame = encode_request(client.tap("X00000019"), MacKey(running.keys.terminals["G0010"]))
        for offset in range(len(frame)):
            await client.send_raw(frame[offset : offset + 1])
        assert (await client.receive()).code == C.APPROVED


async def test_metrics_endpoint(running: Running) -> None:
    async with await connect(running, "G0011") as client:
        await client.request(client.tap("X00000021"))
        await client.request(client.tap("X00000003"))
    url = f"http://{running.host}:{running.metrics_port}/metrics"
    text = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read().decode())
    assert 'onecard_requests_total{channel="terminal",code="00",type="tap"} 1.0' in text
    assert 'onecard_requests_total{channel="terminal",code="41",type="tap"} 1.0' in text
    assert 'onecard_request_duration_seconds_count{channel="terminal"} 2.0' in text
    assert "onecard_journal_fsync_duration_seconds_count" in text
    assert 'onecard_connections_open{channel="terminal"}' in text
    assert "X00000021" not in text


async def test_graceful_stop_answers_what_was_decided(running: Running) -> None:
    async with await connect(running, "G0012") as client:
        await client.send([client.tap(f"X{n:08d}") for n in range(30, 60)])
        running.stop.set()
        answers: list[Response] = []
        with pytest.raises(ClosedByServer):
            while True:
                answers.append(await client.receive())
    # Whatever was read before the stop is answered; nothing answered is lost.
    assert answers and all(a.code == C.APPROVED for a in answers)
    assert running.switch.journal.durable_position == running.switch.journal.appended_position
