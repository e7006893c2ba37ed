"""E-card QR scans end to end over real TCP, on uvloop and on trio: every case of issue 5's
"done when", including a replayed code after a switch restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from protocols.codes import ResponseCode as C
from protocols.ecard import BusinessType
from protocols.terminal import Response
from switch.client import TerminalClient
from switch.config import Config, EngineConfig, ServerConfig
from switch.core import Switch, open_switch
from switch.demo import DemoSpec, create_demo
from switch.ecard.issue import mint_qr, rotation
from switch.journal.records import CardStatusChanged
from switch.keystore import KeyStore
from switch.service import run_service
from tests.conftest import FakeClock, Running
from tests.ecard.helpers import claims_of, flip, resign

pytestmark = pytest.mark.anyio

FULL = 20_000
FARE = 200  # flat line B1: gates G0001..
ELDERLY = "X00000095"  # Shiyan 寿星卡: free rides
LEVEL_1 = "X00000008"
B = BusinessType


@pytest.fixture
def data_dir(tmp_path: Path, engine_config: EngineConfig) -> Path:
    """Demo data with the fixed cards up to 100 (the concession categories sit at 95-98)."""
    create_demo(tmp_path, DemoSpec(cards=100), engine_config)
    return tmp_path


def mint(
    switch: Switch,
    keys: KeyStore,
    card: str,
    business: BusinessType = B.PAYMENT,
    at_ms: int | None = None,
) -> bytes:
    now_ms = switch.clock() if at_ms is None else at_ms
    return mint_qr(switch.engine.ecard, keys.qr_signing, card, business, now_ms)


async def scan(
    running: Running, terminal: str, qr: bytes, amount_fen: int = 0, seq: int = 0
) -> Response:
    async with await connect(running.port, running.keys, terminal, seq or running.clock()) as c:
        return await c.request(c.scan(qr, amount_fen))


async def connect(port: int, keys: KeyStore, terminal: str, seq: int) -> TerminalClient:
    return await TerminalClient.connect("127.0.0.1", port, terminal, keys.terminals[terminal], seq)


async def balance(running: Running, card: str) -> int | None:
    async with await connect(running.port, running.keys, "P0008", 10**12) as client:
        return (await client.request(client.balance(card))).balance_fen


async def test_valid_scans_are_approved(running: Running) -> None:
    switch, keys = running.switch, running.keys
    at_gate = await scan(running, "G0001", mint(switch, keys, "X00000001"))
    assert (at_gate.code, at_gate.amount_fen, at_gate.balance_fen) == ("00", FARE, FULL - FARE)
    at_pos = await scan(running, "P0001", mint(switch, keys, "X00000010"), amount_fen=350)
    assert (at_pos.code, at_pos.amount_fen, at_pos.balance_fen) == ("00", 350, FULL - 350)
    medical = await scan(running, "H0001", mint(switch, keys, LEVEL_1, B.MEDICAL))
    assert (medical.code, medical.amount_fen) == ("00", 0)
    assert await balance(running, "X00000001") == FULL - FARE


async def test_each_refusal_has_its_own_code(running: Running) -> None:
    switch, keys, now_ms = running.switch, running.keys, running.clock()
    old_key = keys.qr_signing[1]
    refused: dict[str, str] = {}

    async def expect(name: str, code: C, terminal: str, qr: bytes, amount_fen: int = 0) -> None:
        response = await scan(running, terminal, qr, amount_fen, seq=len(refused) + 1)
        assert response.code == code, name
        assert response.reference is not None  # journalled decisions
        refused[name] = response.code

    await expect(
        "expired", C.EXPIRED_CARD, "G0001", mint(switch, keys, "X00000011", at_ms=now_ms - 76_000)
    )
    await expect(
        "not yet valid",
        C.QR_NOT_YET_VALID,
        "G0001",
        mint(switch, keys, "X00000011", at_ms=now_ms + 16_000),
    )
    await expect(
        "forged", C.QR_SIGNATURE_INVALID, "G0001", flip(mint(switch, keys, "X00000011"), 60)
    )
    await expect(
        "unknown key",
        C.QR_KEY_UNKNOWN,
        "G0001",
        resign(mint(switch, keys, "X00000011"), bytes(32), key_id=7),
    )
    used = mint(switch, keys, "X00000012")
    assert (await scan(running, "G0002", used)).code == C.APPROVED
    await expect("replayed", C.QR_ALREADY_USED, "G0001", used)
    await expect(
        "business type",
        C.QR_BUSINESS_NOT_ACCEPTED,
        "G0001",
        mint(switch, keys, "X00000011", B.QUERY),
    )
    level_1 = resign(mint(switch, keys, LEVEL_1, B.QUERY), old_key, business_type=B.PAYMENT)
    await expect("level 1 payment", C.ECARD_LEVEL_TOO_LOW, "P0001", level_1, amount_fen=100)
    lost_later = mint(switch, keys, "X00000013")
    switch.submit([CardStatusChanged(now_ms, "X00000013", "lost", "reported lost")])
    await expect("physical card lost", C.LOST_CARD, "G0001", lost_later)
    # Rotation: key 2 signs; key 1 stays accepted for one second more, then is retired.
    records = rotation(switch.engine.ecard, 2, keys.new_qr_key(2), now_ms, retire_after_ms=1000)
    switch.submit(list(records))
    before_retirement = resign(mint(switch, keys, "X00000014"), old_key, key_id=1)
    assert (await scan(running, "G0003", before_retirement)).code == C.APPROVED
    running.clock.advance(seconds=1)
    retired = resign(mint(switch, keys, "X00000015"), old_key, key_id=1)
    await expect("retired key", C.QR_KEY_RETIRED, "G0001", retired)
    assert claims_of(mint(switch, keys, "X00000015")).key_id == 2
    assert len(set(refused.values())) == len(refused) == 9
    for card in ("X00000011", LEVEL_1, "X00000013", "X00000015"):
        assert switch.engine.cards[card].purse_fen == FULL  # no refusal moved money


async def test_scan_and_tap_debit_the_same_purse_and_free_rides(running: Running) -> None:
    switch, keys = running.switch, running.keys
    async with await connect(running.port, keys, "G0001", 1) as gate:
        assert (await gate.request(gate.tap("X00000016"))).amount_fen == FARE
        assert (await gate.request(gate.tap(ELDERLY))).amount_fen == 0  # free ride 1 of 80
        running.clock.advance(minutes=91)  # a new boarding, past the transfer window
        first = await gate.request(gate.scan(mint(switch, keys, "X00000016")))
        second = await gate.request(gate.scan(mint(switch, keys, ELDERLY)))
    assert (first.amount_fen, first.balance_fen) == (FARE, FULL - 2 * FARE)
    assert (second.code, second.amount_fen) == ("00", 0)  # free ride 2 of 80
    assert switch.engine.transit[ELDERLY].free_rides_used == 2
    assert await balance(running, "X00000016") == FULL - 2 * FARE


@asynccontextmanager
async def serving(data_dir: Path, clock: FakeClock) -> AsyncIterator[tuple[Switch, int]]:
    """A switch on `data_dir` until the block ends, then stopped: its journal closed."""
    config = Config(server=ServerConfig(port=0, metrics_port=0))
    switch = open_switch(data_dir, config, clock)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        port, _ = await group.start(run_service, switch, config, stop)
        yield switch, port
        stop.set()


async def test_a_code_used_before_a_restart_stays_used(data_dir: Path, clock: FakeClock) -> None:
    keys = KeyStore.load(data_dir)
    async with serving(data_dir, clock) as (switch, port):
        qr = mint(switch, keys, "X00000017")
        async with await connect(port, keys, "G0001", 100) as client:
            first = await client.request(client.scan(qr))
        assert first.code == C.APPROVED
    clock.advance(seconds=5)
    async with serving(data_dir, clock) as (switch, port):
        async with await connect(port, keys, "G0002", 1) as client:
            again = await client.request(client.scan(qr))
        async with await connect(port, keys, "G0001", 100) as client:
            retry = await client.request(client.scan(qr, seq=100))
        assert again.code == C.QR_ALREADY_USED
        assert retry == first  # the same seq is a retry: the original answer, not a replay
        assert switch.engine.cards["X00000017"].purse_fen == FULL - FARE
