"""A live switch — terminal and ISO 8583 channels, four bank links, the service API, the
settlement scheduler — under a little load: /metrics serves the catalogue (docs/metrics.md)
exactly, with the load counted and no card number or terminal id in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from protocols.codes import ResponseCode as C
from switch.api.auth import Tokens
from switch.api.service import ApiService
from switch.banks.config import BankLink, BanksConfig, Iso8583Config
from switch.banks.simulator import BankHost, BankSimulator
from switch.client import TerminalClient
from switch.config import Config, ServerConfig
from switch.core import open_switch
from switch.demo import PARTNER_BANKS
from switch.keystore import KeyStore
from switch.privacy.purposes import Role
from switch.service import run_service
from tests.conftest import DEMO_CARDS, FakeClock
from tests.iso8583.client import IsoClient
from tests.iso8583.conftest import until
from tests.ops.catalogue import catalogue

pytestmark = pytest.mark.anyio

APPROVED_TAPS = ("X00000001", "X00000011", "X00000012", "X00000013")
LOST_CARD = "X00000003"
ISO_CARD = "X00000010"
# What the scrape must serve with this configuration: all but the PostgreSQL store's, a
# closed cycle's and the hook's (docs/metrics.md, column "present").
SERVED = frozenset({"always", "iso8583", "settlement", "api"})


async def scrape(data_dir: Path, clock: FakeClock) -> tuple[str, list[str]]:
    """Run the switch, load it a little, return the scrape and the identifiers used."""
    sims = {
        bank: BankSimulator(BankHost(bank), BankLink(bank).mac_key)
        for bank in sorted(PARTNER_BANKS)
    }
    async with anyio.create_task_group() as banks:
        for sim in sims.values():
            await banks.start(sim.serve)
        config = Config(
            server=ServerConfig(port=0, metrics_port=0, api_port=0),
            iso8583=Iso8583Config(enabled=True, port=0),
            banks=BanksConfig(links=[BankLink(bank, port=sim.port) for bank, sim in sims.items()]),
        )
        switch = open_switch(data_dir, config, clock)
        tokens = Tokens()
        token = tokens.add("ops-test", Role.SERVICE_DESK)
        api = ApiService(switch, config, tokens, background=False)
        keys = KeyStore.load(data_dir)
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            port, metrics_port = await group.start(
                lambda task_status: run_service(
                    switch, config, stop, task_status=task_status, api=api
                )
            )
            links = switch.engine.payments.statistics.links_up
            await until(lambda: all(links.values()), "every bank link to sign on")
            async with await TerminalClient.connect(
                "127.0.0.1", port, "G0001", keys.terminals["G0001"]
            ) as gate:
                for card in APPROVED_TAPS:
                    assert (await gate.request(gate.tap(card))).code == C.APPROVED
                assert (await gate.request(gate.tap(LOST_CARD))).code == C.LOST_CARD
                assert (await gate.denylist_page(0)).code == C.APPROVED
            stream = await anyio.connect_tcp(
                "127.0.0.1", switch.engine.payments.statistics.listen_port
            )
            merchant = IsoClient(stream, "P0001", keys.terminals["P0001"])
            assert (await merchant.request(merchant.purchase(ISO_CARD, 100, account="96")))[
                "39"
            ] == "00"
            assert (await merchant.request(merchant.purchase(ISO_CARD, 100)))["39"] == "00"
            await merchant.aclose()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api.port}",
                headers={"authorization": f"Bearer {token}"},
            ) as desk:
                assert (await desk.get(f"/cards/{APPROVED_TAPS[0]}")).status_code == 200
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            stop.set()
        banks.cancel_scope.cancel()
    return text, [*APPROVED_TAPS, LOST_CARD, ISO_CARD, "G0001", "P0001"]


@pytest.fixture
async def scraped(data_dir: Path, clock: FakeClock) -> AsyncIterator[tuple[str, list[str]]]:
    yield await scrape(data_dir, clock)


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels.items() >= labels.items()]
    assert found, f"no sample {name}{labels}"
    return sum(found)


async def test_scrape_serves_the_catalogue(scraped: tuple[str, list[str]]) -> None:
    text, identifiers = scraped
    entries = catalogue()
    families = {
        (f.name + "_total" if f.type == "counter" else f.name): f
        for f in text_string_to_metric_families(text)
    }
    served = set(families)
    uncatalogued = served - set(entries)
    assert not uncatalogued, f"served but not in docs/metrics.md: {sorted(uncatalogued)}"
    expected = {name for name, entry in entries.items() if entry.present in SERVED}
    assert not expected - served, f"catalogued but not served: {sorted(expected - served)}"
    for name, family in families.items():
        entry = entries[name]
        assert family.type == entry.kind, (name, family.type, entry.kind)
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == entry.labels, (name, sample.labels)
    for identifier in identifiers:
        assert identifier not in text, f"{identifier} in the metrics"


async def test_scrape_counts_the_load(scraped: tuple[str, list[str]]) -> None:
    text, _ = scraped
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    terminal, iso = {"channel": "terminal"}, {"channel": "iso8583"}
    assert _value(samples, "onecard_requests_total", **terminal, type="tap", code="00") == 4
    assert _value(samples, "onecard_requests_total", **terminal, type="tap", code="41") == 1
    assert _value(samples, "onecard_requests_total", **iso, type="purchase", code="00") == 2
    assert _value(samples, "onecard_request_duration_seconds_count", **terminal) == 6
    assert _value(samples, "onecard_api_requests_total", operation="get_card", status="200") == 1
    for bank in PARTNER_BANKS:
        assert _value(samples, "onecard_bank_link_up", bank=bank) == 1
    assert _value(samples, "onecard_bank_request_duration_seconds_count") == 1
    assert _value(samples, "onecard_journal_fsync_duration_seconds_count") >= 1
    assert _value(samples, "onecard_journal_written_bytes_total") > 0
    assert _value(samples, "onecard_cards_cached") >= DEMO_CARDS
    assert _value(samples, "onecard_denylist_gates_synced") == 1
    assert _value(samples, "onecard_denylist_gates_stale") == 0
    assert _value(samples, "onecard_connections_accepted_total", **terminal) == 1
    assert _value(samples, "onecard_ready") == 1
    assert _value(samples, "onecard_gc_pause_seconds_count") > 0  # passes happened, timed
    assert _value(samples, "onecard_gc_freezes_total") >= 0
    assert _value(samples, "onecard_misuse_lag_records") >= 0
    # The follower process started with the service and has not failed.
    assert _value(samples, "onecard_misuse_follower_restarts_total") == 0
    assert _value(samples, "onecard_misuse_skipped_records_total") == 0
    assert _value(samples, "onecard_phase", phase="serving") == 1
    assert _value(samples, "onecard_settlement_unsettled_cycles") == 0
    assert _value(samples, "onecard_recovery_records") > 0
