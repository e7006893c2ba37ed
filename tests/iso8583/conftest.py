"""Fixtures for the ISO 8583 channel: bank simulators and a switch serving ISO 8583 in the
test's own event loop, on uvloop and on trio (the anyio_backend fixture of tests/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import pytest

from switch.banks.config import BankLink, BanksConfig, Iso8583Config
from switch.banks.simulator import BankHost, BankSimulator
from switch.config import Config, EngineConfig, ServerConfig
from switch.core import Switch, open_switch
from switch.demo import PARTNER_BANKS
from switch.keystore import KeyStore
from switch.service import run_service
from tests.conftest import FakeClock
from tests.iso8583.client import IsoClient

BANKS = tuple(sorted(PARTNER_BANKS))
# Bound on waiting for the switch to reach a state (links up, queues drained): only there
# to turn a hang into a failure with a message.
WAIT_SECONDS_MAX = 30
POLL_SECONDS = 0.005


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        with anyio.fail_after(WAIT_SECONDS_MAX):
            while not condition():
                await anyio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise AssertionError(f"still waiting after {WAIT_SECONDS_MAX} s for {what}") from None


def bank_key(bank_id: str) -> bytes:
    return BankLink(bank_id).mac_key


@dataclass
class Banks:
    """One simulator per demo bank, serving for the whole test (across switch restarts)."""

    sims: dict[str, BankSimulator] = field(default_factory=dict)
    failures: list[Exception] = field(default_factory=list)

    def config(self, **link: object) -> BanksConfig:
        links = [
            BankLink(bank, port=sim.port, **link)  # type: ignore[arg-type]
            for bank, sim in self.sims.items()
        ]
        return BanksConfig(links=links)

    def total_fen(self, cards: list[str]) -> int:
        return sum(sim.host.total_fen(cards) for sim in self.sims.values())


async def _serve(
    sim: BankSimulator,
    failures: list[Exception],
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A simulator that fails is recorded, not let loose on the fixture's task group: that
    group stays open across the test in anyio's runner task, and on trio a child's failure
    cancels the runner task itself, which ends the run and hangs the fixtures' teardown."""
    try:
        await sim.serve(task_status=task_status)
    except Exception as exc:
        failures.append(exc)


@pytest.fixture
async def banks() -> AsyncIterator[Banks]:
    out = Banks()
    async with anyio.create_task_group() as group:
        for bank in BANKS:
            sim = BankSimulator(BankHost(bank), bank_key(bank))
            await group.start(_serve, sim, out.failures)
            out.sims[bank] = sim
        yield out
        group.cancel_scope.cancel()
    if out.failures:
        raise ExceptionGroup("a bank simulator failed during the test", out.failures)


@dataclass
class IsoSwitch:
    switch: Switch
    port: int
    keys: KeyStore
    clock: FakeClock
    banks: Banks
    stop: anyio.Event
    metrics_port: int

    async def client(self, terminal: str) -> IsoClient:
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        return IsoClient(stream, terminal, self.keys.terminals[terminal])

    def bank_of(self, card: str) -> str:
        return self.switch.engine.cards[card].bank_id

    def sim_of(self, card: str) -> BankSimulator:
        return self.banks.sims[self.bank_of(card)]

    def money(self) -> int:
        """Everything the holders have plus what the switch owes payees: constant."""
        engine = self.switch.engine
        cards = list(engine.cards)
        held = sum(c.purse_fen + c.medical_fen for c in engine.cards.values())
        owed = sum(engine.payments.positions_fen.values())
        return held + owed + self.banks.total_fen(cards)

    async def links_up(self) -> None:
        statistics = self.switch.engine.payments.statistics
        await until(lambda: all(statistics.links_up.values()), "every bank link to sign on")

    async def settled(self) -> None:
        """Wait until no request waits on a bank and every reversal and advice is through."""
        state = self.switch.engine.payments
        await until(lambda: not state.pending and not state.saf_depth(), "queues to drain")
        await self.switch.journal.flush()


@asynccontextmanager
async def iso_switch(
    data_dir: Path,
    clock: FakeClock,
    banks: Banks,
    banks_config: BanksConfig | None = None,
    *,
    wait_links: bool = True,
) -> AsyncIterator[IsoSwitch]:
    config = Config(
        engine=EngineConfig(),
        server=ServerConfig(port=0, metrics_port=0),
        iso8583=Iso8583Config(enabled=True, port=0),
        banks=banks_config or banks.config(),
    )
    switch = open_switch(data_dir, config, clock)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        _, metrics_port = await group.start(run_service, switch, config, stop)
        port = switch.engine.payments.statistics.listen_port
        keys = KeyStore.load(data_dir)
        running = IsoSwitch(switch, port, keys, clock, banks, stop, metrics_port)
        if wait_links:
            await running.links_up()
        try:
            yield running
        finally:
            stop.set()


@pytest.fixture
async def iso(data_dir: Path, clock: FakeClock, banks: Banks) -> AsyncIterator[IsoSwitch]:
    async with iso_switch(data_dir, clock, banks) as running:
        yield running
