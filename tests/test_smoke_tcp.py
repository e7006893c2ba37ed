from __future__ import annotations

import pytest

from switch.client import TerminalClient
from tests.conftest import Running

pytestmark = pytest.mark.anyio


async def test_tap_approved(running: Running) -> None:
    async with await TerminalClient.connect(
        running.host, running.port, "G0001", running.keys.terminals["G0001"]
    ) as client:
        response = await client.request(client.tap("X00000001"))
    assert response.code == "00"
    assert response.amount_fen == 200
    assert client.mac_failures == 0
