"""The ISO 8583 channel end to end over TCP, with pyiso8583 as the merchant's client and
simulated bank hosts, on uvloop and on trio. Money is conserved in every scenario: what the
holders have (purse, medical account, bank accounts) plus what the switch owes payees."""

from __future__ import annotations

import struct
import urllib.request
from pathlib import Path

import anyio
import pytest

from switch.banks.config import OnTimeout
from tests.conftest import FakeClock
from tests.iso8583.client import IsoClient
from tests.iso8583.conftest import Banks, IsoSwitch, bank_key, iso_switch, until

pytestmark = pytest.mark.anyio

CARD = "X00000010"
BANK_FULL = 1_000_000
PURSE_FULL = 20_000
TIMEOUT_S = 5


async def test_network_management(iso: IsoSwitch) -> None:
    client = await iso.client("P0001")
    for code in ("001", "301", "002"):
        answer = await client.request(client.message("0800", de70=code))
        assert (answer["t"], answer["39"], answer["11"]) == ("0810", "00", f"{client.stan:06d}")
    assert client.mac_failures == 0
    await client.aclose()


async def test_every_message_type(iso: IsoSwitch) -> None:
    before = iso.money()
    client = await iso.client("P0001")
    paid = client.purchase(CARD, 350, account="96")
    assert (await client.request(paid))["39"] == "00"
    bank = client.purchase("X00000011", 12_345)
    answer = await client.request(bank)
    assert (answer["t"], answer["39"]) == ("0210", "00")
    auth = client.preauth("X00000012", 5_000, account="96")
    answer = await client.request(auth)
    assert (answer["t"], answer["39"]) == ("0110", "00")
    answer = await client.request(client.completion(auth, 3_000))
    assert (answer["t"], answer["39"]) == ("0230", "00")
    answer = await client.request(client.reversal(paid))
    assert (answer["t"], answer["39"]) == ("0410", "00")
    answer = await client.request(client.reversal(bank, mti="0420"))
    assert (answer["t"], answer["39"]) == ("0430", "00")
    repeat = await client.request(client.reversal(bank, mti="0421") | {"11": answer["11"]})
    assert repeat["39"] == "00"  # a repeat of the same advice: the same answer
    assert client.mac_failures == 0
    await iso.settled()
    engine = iso.switch.engine
    assert engine.cards[CARD].purse_fen == PURSE_FULL
    assert engine.cards["X00000012"].purse_fen == PURSE_FULL - 3_000
    assert iso.sim_of("X00000011").host.balance("X00000011") == BANK_FULL
    assert iso.money() == before
    await client.aclose()


async def test_declined_by_the_bank(iso: IsoSwitch) -> None:
    iso.sim_of(CARD).host.declines[CARD] = "51"
    client = await iso.client("P0002")
    answer = await client.request(client.purchase(CARD, 999))
    assert answer["39"] == "51"
    await client.aclose()


async def test_medical_split_and_reversal(iso: IsoSwitch) -> None:
    before = iso.money()
    card = iso.switch.engine.cards[CARD]
    personal = card.medical_fen
    client = await iso.client("H0001")
    request = client.medical(CARD, personal + 7_000 + 2_000, 2_000)
    answer = await client.request(request)
    assert answer["39"] == "00"
    assert answer["54"] == f"9791156C{personal:012d}0092156C{7_000:012d}"
    assert card.medical_fen == 0
    assert (await client.request(client.reversal(request)))["39"] == "00"
    assert (await client.request(client.reversal(request)))["39"] == "94"
    await iso.settled()
    assert card.medical_fen == personal
    assert iso.sim_of(CARD).host.balance(CARD) == BANK_FULL
    assert iso.money() == before
    await client.aclose()


async def test_bill_paid_once(iso: IsoSwitch) -> None:
    before = iso.money()
    client = await iso.client("P0003")
    assert (await client.request(client.bill(CARD, 6_600, "POWER", "2026-11-123")))["39"] == "00"
    again = await client.request(client.bill("X00000011", 6_600, "POWER", "2026-11-123"))
    assert again["39"] == "88"
    assert iso.switch.engine.payments.positions_fen["biller:POWER"] == 6_600
    await iso.settled()
    assert iso.money() == before
    await client.aclose()


async def test_preauth_partial_completion_and_expiry(iso: IsoSwitch) -> None:
    before = iso.money()
    client = await iso.client("P0004")
    auth = client.preauth(CARD, 30_000)  # at the bank
    assert (await client.request(auth))["39"] == "00"
    host = iso.sim_of(CARD).host
    assert host.available(CARD) == BANK_FULL - 30_000
    assert (await client.request(client.completion(auth, 10_000)))["39"] == "00"
    other = client.preauth("X00000013", 8_000)
    assert (await client.request(other))["39"] == "00"
    iso.clock.advance(seconds=iso.switch.engine.payments.window_entries_max * 0 + 7 * 24 * 3600)
    await iso.settled()
    await until(lambda: not iso.switch.engine.payments.holds, "the hold to expire")
    await iso.settled()
    assert host.balance(CARD) == BANK_FULL - 10_000 and host.available(CARD) == BANK_FULL - 10_000
    assert iso.sim_of("X00000013").host.available("X00000013") == BANK_FULL
    assert iso.money() == before
    await client.aclose()


async def test_late_reply_after_timeout(iso: IsoSwitch) -> None:
    before = iso.money()
    sim = iso.sim_of(CARD)
    sim.behaviour.withhold.add(CARD)
    client = await iso.client("P0005")
    await client.send(client.purchase(CARD, 4_321))
    await until(lambda: sim.withheld == 1, "the bank to hold its answer")
    iso.clock.advance(seconds=TIMEOUT_S)
    answer = await client.receive()
    assert answer["39"] == "91"
    assert await sim.release() == 1  # the bank's answer, late
    state = iso.switch.engine.payments
    await until(lambda: state.late_replies_total == 1, "the late reply to be matched")
    await iso.settled()
    assert sim.host.balance(CARD) == BANK_FULL  # booked, then reversed
    assert iso.money() == before
    await client.aclose()


async def test_bank_down_stand_in_then_advices(iso: IsoSwitch) -> None:
    before = iso.money()
    sim = iso.sim_of(CARD)
    bank = iso.bank_of(CARD)
    statistics = iso.switch.engine.payments.statistics
    await sim.go_down()
    await until(lambda: not statistics.links_up[bank], "the link to go down")
    client = await iso.client("P0006")
    answer = await client.request(client.purchase(CARD, 2_000))
    assert answer["39"] == "00"
    assert (await client.request(client.purchase(CARD, 48_001)))["39"] == "91"  # floor
    assert iso.switch.engine.payments.saf_depth() == 1
    sim.come_up()
    await iso.links_up()
    await iso.settled()
    assert sim.host.balance(CARD) == BANK_FULL - 2_000
    assert ("0220", int(answer["37"])) in sim.host.received
    assert iso.money() == before
    await client.aclose()


async def test_reversal_delivered_after_a_switch_restart(
    data_dir: Path, clock: FakeClock, banks: Banks
) -> None:
    async with iso_switch(data_dir, clock, banks) as iso:
        before = iso.money()
        sim = iso.sim_of(CARD)
        sim.behaviour.withhold.add(CARD)
        sim.behaviour.ignore_reversals = True
        client = await iso.client("P0007")
        await client.send(client.purchase(CARD, 5_555))
        await until(lambda: sim.withheld == 1, "the bank to hold its answer")
        clock.advance(seconds=TIMEOUT_S)
        assert (await client.receive())["39"] == "91"
        await until(lambda: sim.host.received[-1][0] == "0400", "the reversal to be sent")
        assert iso.switch.engine.payments.saf_depth() == 1
        assert sim.host.balance(CARD) == BANK_FULL - 5_555  # not reversed yet
        await client.aclose()
    sim.behaviour.ignore_reversals = False
    async with iso_switch(data_dir, clock, banks) as iso:
        # The queue came back from the journal and drains once the link signs on.
        await iso.settled()
        assert sim.host.received[-1][0] == "0401"  # the repeat MTI
        assert sim.host.balance(CARD) == BANK_FULL
        assert iso.money() == before


async def test_timeout_stand_in_by_configuration(
    data_dir: Path, clock: FakeClock, banks: Banks
) -> None:
    config = banks.config(on_timeout=OnTimeout.STANDIN)
    async with iso_switch(data_dir, clock, banks, config) as iso:
        before = iso.money()
        sim = iso.sim_of(CARD)
        sim.behaviour.drop.add(CARD)  # the request is lost: the bank never books it
        client = await iso.client("P0008")
        await client.send(client.purchase(CARD, 3_000))
        await until(lambda: bool(iso.switch.engine.payments.pending), "the bank request")
        clock.advance(seconds=TIMEOUT_S)
        assert (await client.receive())["39"] == "00"
        await iso.settled()
        assert sim.host.balance(CARD) == BANK_FULL - 3_000  # the advice, once
        assert iso.money() == before
        await client.aclose()


async def test_bad_input(iso: IsoSwitch) -> None:
    client = await iso.client("P0001")
    garbage = b"0200" + b"\xff" * 20
    await client.send_raw(struct.pack(">H", len(garbage)) + garbage)
    answer = await client.receive()
    assert (answer["t"], answer["39"]) == ("0210", "30")
    assert (await client.request(client.purchase(CARD, 100, account="96")))["39"] == "00"
    await client.send_raw(struct.pack(">H", 3) + b"abc")
    assert (await client.receive())["39"] == "30"
    with pytest.raises(anyio.EndOfStream):
        await client.receive()  # a framing error closes the connection
    await client.aclose()
    assert iso.switch.engine.cards[CARD].purse_fen == PURSE_FULL - 100


async def test_metrics(iso: IsoSwitch) -> None:
    client = await iso.client("P0001")
    await client.request(client.purchase(CARD, 100, account="96"))
    await client.aclose()
    port = iso.metrics_port
    url = f"http://127.0.0.1:{port}/metrics"
    text = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read().decode())
    assert 'onecard_requests_total{channel="iso8583",code="00",type="purchase"} 1.0' in text
    assert 'onecard_bank_link_up{bank="ABC"} 1.0' in text
    assert "onecard_saf_entries" in text and "onecard_saf_oldest_age_seconds" in text
    assert "onecard_standin_approvals_total" in text and CARD not in text


async def test_bank_simulator_answers_from_two_tasks_at_once(banks: Banks) -> None:
    """Late answers released by the test while the connection's reply tasks answer other
    messages: one writer at a time per connection. Two at once raised BusyResourceError
    and took the simulator down (the trio failure of test_late_reply_after_timeout)."""
    sim = next(iter(banks.sims.values()))
    bank_id = sim.host.bank_id
    key = bank_key(bank_id)
    cards = [f"X{n:08d}" for n in range(40)]
    sim.behaviour.withhold.update(cards)
    stream = await anyio.connect_tcp("127.0.0.1", sim.port)
    reader = IsoClient(stream, "ONECARD", key)
    await reader.send(*(reader.purchase(card, 100) for card in cards))
    await until(lambda: sim.withheld == len(cards), "the bank to hold its answers")
    echoes = [reader.message("0800", de70="301") for _ in range(40)]
    async with anyio.create_task_group() as group:
        group.start_soon(reader.send, *echoes)  # each answered by its own reply task
        group.start_soon(sim.release)
        answers = [await reader.receive() for _ in range(len(cards) + len(echoes))]
    assert sorted(a["t"] for a in answers) == ["0210"] * len(cards) + ["0810"] * len(echoes)
    assert reader.mac_failures == 0
    await reader.aclose()
