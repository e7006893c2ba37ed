"""A new fare table is activated by SIGHUP, without a restart; a bad one changes nothing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from switch.client import TerminalClient
from switch.config import DEFAULT_FARES, EngineConfig
from switch.demo import DemoSpec, create_demo
from switch.keystore import KeyStore
from tests.integration.process import switch_process

pytestmark = pytest.mark.anyio

B1_FARE = 'id = "B1"                # city bus, one fare per boarding\nfare_fen = 200'


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})


async def tap(port: int, keys: KeyStore, card: str) -> int:
    async with await TerminalClient.connect(
        "127.0.0.1", port, "G0001", keys.terminals["G0001"], first_seq=int(card[1:]) * 10
    ) as client:
        answer = await client.request(client.tap(card))
    assert answer.code == "00", answer
    return answer.amount_fen


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    create_demo(tmp_path / "data", DemoSpec(cards=40), EngineConfig())
    return tmp_path / "data"


async def test_sighup_activates_a_newer_table(tmp_path: Path, data_dir: Path) -> None:
    keys = KeyStore.load(data_dir)
    fares = tmp_path / "fares.toml"
    fares.write_text(DEFAULT_FARES.read_text())
    config = tmp_path / "onecard.toml"
    config.write_text(f'fares = "{fares}"\n')
    options = ["--config", str(config)]
    async with switch_process(data_dir, "uvloop", tmp_path / "log", options) as child:
        assert await tap(child.port, keys, "X00000010") == 200
        fares.write_text("version = 3\n[[flat]]\nid = 1\n")  # broken: ignored, says why
        child.process.send_signal(signal.SIGHUP)
        await anyio.sleep(0.3)
        assert await tap(child.port, keys, "X00000011") == 200
        newer = DEFAULT_FARES.read_text().replace("version = 1", "version = 2")
        fares.write_text(newer.replace(B1_FARE, B1_FARE.replace("200", "250")))
        child.process.send_signal(signal.SIGHUP)
        fares_seen = []
        with child.deadline("reloading the fare table"):
            for serial in range(12, 40):  # a new card each try: no repeat-tap rule
                fares_seen.append(await tap(child.port, keys, f"X{serial:08d}"))
                if fares_seen[-1] != 200:
                    break
                await anyio.sleep(0.05)
        assert fares_seen[-1] == 250
        child.process.send_signal(signal.SIGTERM)
        assert await child.process.wait() == 0
    assert "fare table not reloaded" in (tmp_path / "log").read_text()
