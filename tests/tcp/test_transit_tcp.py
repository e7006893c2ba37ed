"""Transit rules end to end over the terminal protocol (docs/fares.md), on uvloop and trio.

The switch's clock is the test's FakeClock, so minutes and months pass instantly."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocols.codes import ResponseCode as C
from protocols.terminal import OfflineTap, Response
from switch.client import TerminalClient
from switch.journal.records import CardStatusChanged, EmergencyRelease
from switch.transit.denylist import unpack
from tests.conftest import T0_MS, Running

pytestmark = pytest.mark.anyio

FULL = 20_000
CST = datetime.timezone(datetime.timedelta(hours=8))
ELDERLY, DISABLED, STUDENT, LOW_INCOME = "X00000095", "X00000096", "X00000097", "X00000098"
# Metro network M: entry gates MI01..MI07 and exit gates MO01..MO07 at these stations.
STATIONS = ["M00", "M06", "M061", "M32", "M33", "M52", "M521"]


def cst_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime.datetime(year, month, day, hour, minute, tzinfo=CST).timestamp()) * 1000


class Terminals:
    """One client per terminal, each with its own sequence numbers."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.clients: dict[str, TerminalClient] = {}

    async def client(self, terminal: str) -> TerminalClient:
        if terminal not in self.clients:
            self.clients[terminal] = await TerminalClient.connect(
                self.running.host,
                self.running.port,
                terminal,
                self.running.keys.terminals[terminal],
            )
        return self.clients[terminal]

    async def tap(self, terminal: str, card: str, stop: str = "") -> Response:
        client = await self.client(terminal)
        request = client.tap(card)
        if stop:
            request = type(request)(
                request.terminal_id, request.seq, request.terminal_time_ms, card, stop
            )
        return await client.request(request)

    async def charged(self, terminal: str, card: str, stop: str = "") -> int:
        response = await self.tap(terminal, card, stop)
        assert response.code == C.APPROVED, response
        return response.amount_fen

    async def close(self) -> None:
        for client in self.clients.values():
            await client.stream.aclose()


@pytest.fixture
async def gates(running: Running) -> AsyncIterator[Terminals]:
    terminals = Terminals(running)
    yield terminals
    await terminals.close()


async def test_metro_distance_boundaries(gates: Terminals, running: Running) -> None:
    # 6.0 km -> ¥3, 6.1 -> ¥4, 32 -> ¥6, 33 -> ¥7, 52 -> ¥7, 52.1 -> ¥8 (Beijing table)
    expected = {2: 300, 3: 400, 4: 600, 5: 700, 6: 700, 7: 800}
    for number, fare in expected.items():
        card = f"X{10 + number:08d}"
        assert await gates.charged("MI01", card) == 0
        running.clock.advance(minutes=30)
        assert await gates.charged(f"MO{number:02d}", card) == fare, STATIONS[number - 1]


async def test_same_station_exit_and_overstay(gates: Terminals, running: Running) -> None:
    await gates.charged("MI02", "X00000020")
    running.clock.advance(minutes=5)
    assert await gates.charged("MO02", "X00000020") == 300  # same-station fare
    await gates.charged("MI01", "X00000021")
    running.clock.advance(minutes=240)
    assert await gates.charged("MO03", "X00000021") == 400  # exactly the limit: no overstay
    await gates.charged("MI01", "X00000022")
    running.clock.advance(minutes=240, ms=1)
    assert await gates.charged("MO03", "X00000022") == 400 + 300  # overstay fare added


async def test_anti_passback_and_repeat_tap(gates: Terminals, running: Running) -> None:
    assert (await gates.tap("MO01", "X00000023")).code == C.NOT_PERMITTED_TO_CARDHOLDER
    await gates.charged("MI01", "X00000023")
    assert (await gates.tap("MI02", "X00000023")).code == C.EXCEEDS_FREQUENCY_LIMIT  # < 2 s
    running.clock.advance(seconds=2)
    assert (await gates.tap("MI02", "X00000023")).code == C.NOT_PERMITTED_TO_CARDHOLDER


async def test_abandoned_journey_is_charged_at_the_next_entry(
    gates: Terminals, running: Running
) -> None:
    await gates.charged("MI04", "X00000024")  # M32, never taps out
    running.clock.advance(minutes=241)
    # The incomplete journey pays the farthest fare from M32 (to M00: 32 km -> ¥6).
    assert await gates.charged("MI01", "X00000024") == 600


async def test_emergency_release_lets_exits_through(gates: Terminals, running: Running) -> None:
    now = running.clock()
    position = running.switch.submit([EmergencyRelease(now, "M", now + 3 * 86_400_000)])
    await running.switch.journal.wait_durable(position)
    assert await gates.charged("MO03", "X00000025") == 0
    running.clock.advance(minutes=3 * 24 * 60)
    assert (await gates.tap("MO03", "X00000026")).code == C.NOT_PERMITTED_TO_CARDHOLDER


async def test_bus_repeat_tap_and_single_charge(gates: Terminals, running: Running) -> None:
    assert await gates.charged("G0001", "X00000027") == 200
    running.clock.advance(seconds=19.999)
    assert (await gates.tap("G0002", "X00000027")).code == C.EXCEEDS_FREQUENCY_LIMIT
    running.clock.advance(ms=1)  # 20 s: no longer a repeat, still the same boarding
    assert await gates.charged("G0002", "X00000027") == 0
    running.clock.advance(minutes=3)  # 3 min 20 s after the charge: a new ride (transfer)
    assert await gates.charged("G0001", "X00000027") == 100


async def test_transfer_window_edges_and_count(gates: Terminals, running: Running) -> None:
    assert await gates.charged("G0001", "X00000028") == 200
    running.clock.advance(minutes=90)  # exactly at the window's end: discounted
    assert await gates.charged("G0001", "X00000028") == 100
    running.clock.advance(minutes=90)
    assert await gates.charged("G0001", "X00000028") == 100  # second transfer
    running.clock.advance(minutes=10)
    assert await gates.charged("G0001", "X00000028") == 200  # only 2 per chain
    running.clock.advance(minutes=90, ms=1)  # just past the window
    assert await gates.charged("G0001", "X00000028") == 200


async def test_metro_exit_is_a_transfer_from_the_bus(gates: Terminals, running: Running) -> None:
    assert await gates.charged("G0001", "X00000029") == 200
    running.clock.advance(minutes=30)
    await gates.charged("MI01", "X00000029")
    running.clock.advance(minutes=70)  # the ride ends 100 min after the bus: it started at 30
    assert await gates.charged("MO03", "X00000029") == 400 - 100


async def test_concessions(gates: Terminals) -> None:
    assert await gates.charged("G0001", DISABLED) == 0
    assert await gates.charged("G0001", STUDENT) == 100
    assert await gates.charged("G0001", LOW_INCOME) == 100
    assert await gates.charged("G0001", "X00000004") == 200  # suspended: transit still works


async def test_elderly_81st_ride_and_month_rollover(gates: Terminals, running: Running) -> None:
    running.clock.now_ms = cst_ms(2026, 11, 1, 6)
    for ride in range(80):
        assert await gates.charged("G0001", ELDERLY) == 0, f"ride {ride + 1}"
        running.clock.advance(minutes=91)  # past the transfer window: every ride full price
    assert await gates.charged("G0001", ELDERLY) == 200  # the 81st ride of November
    running.clock.now_ms = cst_ms(2026, 12, 1) - 1  # 23:59:59.999 on 30 November
    assert await gates.charged("G0001", ELDERLY) == 200
    running.clock.now_ms = cst_ms(2026, 12, 1)  # midnight: December's 80 rides
    assert (await gates.tap("G0001", ELDERLY)).code == C.EXCEEDS_FREQUENCY_LIMIT
    running.clock.advance(minutes=91)
    assert await gates.charged("G0001", ELDERLY) == 0


async def test_sectional_tap_on_tap_off_and_missed_tap_off(
    gates: Terminals, running: Running
) -> None:
    assert await gates.charged("V0001", "X00000030", stop="B8S1") == 0  # tap-on
    running.clock.advance(seconds=10)
    assert (await gates.tap("V0001", "X00000030", stop="B8S1")).code == "65"
    running.clock.advance(minutes=20)
    assert await gates.charged("V0002", "X00000030", stop="B8S4") == 200  # 3 sections
    # Boards again and misses the tap-off; the next day's first tap pays the farthest fare
    # from B8S2 (to B8S5: 3 sections, ¥2) and opens the new journey.
    running.clock.advance(minutes=200)
    assert await gates.charged("V0001", "X00000030", stop="B8S2") == 0
    running.clock.advance(minutes=24 * 60)
    assert await gates.charged("V0003", "X00000030", stop="B8S0") == 200


async def test_unknown_stop_and_insufficient_purse_for_a_journey(gates: Terminals) -> None:
    assert (await gates.tap("V0001", "X00000031", stop="NOPE")).code == C.NOT_PERMITTED_TO_TERMINAL
    response = await gates.tap("MI01", "X00000007")  # empty purse cannot open a journey
    assert (response.code, response.balance_fen) == (C.INSUFFICIENT_FUNDS, 0)


async def test_loss_report_refused_at_once_and_in_the_next_denylist_delta(
    gates: Terminals, running: Running
) -> None:
    client = await gates.client("G0003")
    full = await client.denylist_page(0)
    assert full.code == C.APPROVED and full.full
    held = set(unpack(full.added))
    assert {"X00000002", "X00000003", "X00000005", "X00000006"} <= held
    version = full.denylist_version
    report = CardStatusChanged(running.clock(), "X00000032", "lost", "loss reported at desk")
    position = running.switch.submit([report])
    assert (await gates.tap("G0004", "X00000032")).code == C.LOST_CARD  # the same batch on
    await running.switch.journal.wait_durable(position)
    delta = await client.denylist_page(version)
    assert (delta.full, unpack(delta.added), unpack(delta.removed)) == (False, ["X00000032"], [])
    assert delta.denylist_version == version + 1
    lifted = CardStatusChanged(running.clock(), "X00000032", "active", "card found")
    running.switch.submit([lifted])
    again = await client.denylist_page(delta.denylist_version)
    assert unpack(again.removed) == ["X00000032"] and not again.more


async def test_denylist_only_for_gates(gates: Terminals) -> None:
    client = await gates.client("P0001")
    assert (await client.denylist_page(0)).code == C.NOT_PERMITTED_TO_TERMINAL


async def test_new_fare_table_applies_from_activation(
    gates: Terminals, running: Running, tmp_path: Path
) -> None:
    assert await gates.charged("G0001", "X00000033") == 200
    table = (Path(__file__).parents[2] / "switch/transit/tables/shiyan.toml").read_text()
    newer = table.replace("version = 1", "version = 2").replace(
        'id = "B1"                # city bus, one fare per boarding\nfare_fen = 200',
        'id = "B1"                # city bus, one fare per boarding\nfare_fen = 250',
    )
    path = tmp_path / "fares-v2.toml"
    path.write_text(newer)
    activation = running.switch.fares_update(path, running.clock())
    assert activation is not None and activation.version == 2
    await running.switch.journal.wait_durable(running.switch.submit([activation]))
    assert running.switch.fares_update(path, running.clock()) is None  # not newer
    assert await gates.charged("G0001", "X00000034") == 250


def offline_taps(start_ms: int, card: str, count: int, first_seq: int = 1) -> list[OfflineTap]:
    # Bus taps 10 minutes apart: each a new boarding; every third starts a new chain.
    return [
        OfflineTap(first_seq + n, start_ms + n * 100 * 60_000, card, "", n == count - 1)
        for n in range(count)
    ]


async def test_offline_batch_applied_once(gates: Terminals, running: Running) -> None:
    client = await gates.client("G0005")
    taps = offline_taps(running.clock() - 86_400_000, "X00000040", 3)
    upload = client.offline(list(reversed(taps)))  # any order: applied in time order
    first = await client.request(upload)
    assert first.code == C.APPROVED
    assert await balance_of(gates, "X00000040") == FULL - 3 * 200
    assert await client.request(upload) == first  # the same message retried
    again = await client.request(client.offline(taps))  # the same taps in a new message
    assert again.code == C.APPROVED and again.reference != first.reference
    assert await balance_of(gates, "X00000040") == FULL - 3 * 200


async def test_offline_shortfall_becomes_debt_and_deny_lists(
    gates: Terminals, running: Running
) -> None:
    client = await gates.client("G0006")
    version = (await client.denylist_page(0)).denylist_version
    taps = offline_taps(running.clock() - 86_400_000, "X00000007", 2)  # empty purse
    await client.request(client.offline(taps))
    assert running.switch.engine.cards["X00000007"].debt_fen == 400  # under the limit
    assert (await client.denylist_page(version)).added == b""
    await client.request(
        client.offline(offline_taps(running.clock() - 3_600_000, "X00000007", 1, 9))
    )
    assert running.switch.engine.cards["X00000007"].debt_fen == 600
    delta = await client.denylist_page(version)
    assert unpack(delta.added) == ["X00000007"]
    refused = await gates.tap("G0007", "X00000007")
    assert refused.code == C.INSUFFICIENT_FUNDS


async def test_offline_tap_of_an_unknown_card_is_recorded_not_charged(
    gates: Terminals, running: Running
) -> None:
    client = await gates.client("G0008")
    answer = await client.request(client.offline([OfflineTap(1, T0_MS - 60_000, "X99999999")]))
    assert answer.code == C.APPROVED
    assert running.switch.engine.terminals["G0008"].offline_applied(1)


async def balance_of(gates: Terminals, card: str) -> int | None:
    client = await gates.client("P0008")
    return (await client.request(client.balance(card))).balance_fen
