"""Liveness and readiness: the phases, the bank sign-on wait, the latch, the heartbeat; and
over HTTP, readiness flipping only after recovery and sign-on."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from switch.banks.config import BankLink, BanksConfig, Iso8583Config
from switch.banks.simulator import BankHost, BankSimulator, Behaviour
from switch.config import Config, ServerConfig
from switch.core import open_switch
from switch.ops.health import (
    BANK_SIGN_ON_WAIT_SECONDS_MAX,
    LOOP_STALL_SECONDS_MAX,
    Health,
    Phase,
    RecoverySummary,
)
from switch.ops.server import OpsServer
from switch.service import run_service
from tests.conftest import FakeClock
from tests.iso8583.conftest import until

RECOVERED = RecoverySummary(records=10, segments=1, truncated_bytes=0, seconds=0.5)


class Seconds:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_not_ready_until_recovered_and_serving() -> None:
    health = Health(clock=Seconds())
    assert not health.readiness().ok
    assert health.readiness().reasons == ["journal recovery in progress"]
    assert health.liveness().ok  # replaying is work, not a hang
    health.recovered(RECOVERED)
    assert health.readiness().reasons == ["channels not yet listening"]
    health.serving({})
    assert health.readiness() == health.readiness() and health.ready
    health.draining()
    verdict = health.readiness()
    assert (verdict.ok, verdict.phase, verdict.status) == (False, Phase.DRAINING, 503)


def test_waits_for_every_bank_then_latches() -> None:
    clock = Seconds()
    health = Health(clock=clock)
    health.recovered(RECOVERED)
    links = {"ABC": False, "CCB": True}
    health.serving(links)
    assert health.readiness().reasons == ["bank ABC: not signed on yet"]
    links["ABC"] = True
    assert health.readiness().ok
    # A link lost once ready is stand-in's business, not the load balancer's.
    links["CCB"] = False
    verdict = health.readiness()
    assert verdict.ok and verdict.reasons == ["bank CCB: link down, stand-in"]


def test_stops_waiting_for_a_bank_that_never_signs_on() -> None:
    clock = Seconds()
    health = Health(clock=clock)
    health.recovered(RECOVERED)
    health.serving({"ABC": False})
    clock.now += BANK_SIGN_ON_WAIT_SECONDS_MAX - 1
    assert not health.ready
    clock.now += 1
    verdict = health.readiness()
    assert verdict.ok
    assert verdict.reasons == [
        f"bank ABC: did not sign on in {BANK_SIGN_ON_WAIT_SECONDS_MAX:.0f} s, stand-in"
    ]


def test_liveness_fails_when_the_loop_stops_beating() -> None:
    clock = Seconds()
    health = Health(clock=clock)
    health.recovered(RECOVERED)
    health.serving({})
    clock.now += LOOP_STALL_SECONDS_MAX
    assert health.liveness().ok
    health.beat(lag_seconds=0.002)
    clock.now += LOOP_STALL_SECONDS_MAX + 0.5
    verdict = health.liveness()
    assert not verdict.ok and verdict.reasons == ["event loop silent for 10.5 s"]
    health.beat()
    assert health.liveness().ok
    assert health.loop_lag_seconds.count == 2


@pytest.mark.anyio
async def test_readiness_flips_only_after_recovery_and_bank_sign_on(
    data_dir: Path, clock: FakeClock
) -> None:
    """The way `onecard run` does it: the endpoint opens before the journal is replayed."""
    bank = BankSimulator(BankHost("ABC"), BankLink("ABC").mac_key, Behaviour(down=True))
    health = Health()
    with OpsServer("127.0.0.1", 0, health) as ops:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}") as http,
            anyio.create_task_group() as group,
        ):
            await group.start(bank.serve)

            async def probe(path: str) -> tuple[int, dict[str, object]]:
                response = await http.get(path)
                return response.status_code, response.json()

            # Recovering: alive, not ready, and Prometheus can see it.
            assert await probe("/healthz") == (
                200,
                {"status": "ok", "phase": "recovering", "reasons": []},
            )
            status, body = await probe("/readyz")
            assert (status, body["reasons"]) == (503, ["journal recovery in progress"])
            metrics = (await http.get("/metrics")).text
            assert "onecard_ready 0.0" in metrics
            assert 'onecard_phase{phase="recovering"} 1.0' in metrics

            config = Config(
                server=ServerConfig(port=0, metrics_port=0),
                iso8583=Iso8583Config(enabled=True, port=0),
                banks=BanksConfig(links=[BankLink("ABC", port=bank.port)]),
            )
            switch = open_switch(data_dir, config, clock)
            assert (await probe("/readyz"))[0] == 503  # replayed, but nothing serves yet

            stop = anyio.Event()
            await group.start(
                lambda task_status: run_service(
                    switch, config, stop, task_status=task_status, ops=ops
                )
            )
            # Serving, but the bank refuses connections: not ready.
            status, body = await probe("/readyz")
            assert (status, body["phase"], body["reasons"]) == (
                503,
                "serving",
                ["bank ABC: not signed on yet"],
            )
            bank.come_up()
            links = switch.engine.payments.statistics.links_up
            await until(lambda: links["ABC"], "bank ABC to sign on")
            assert await probe("/readyz") == (
                200,
                {"status": "ok", "phase": "serving", "reasons": []},
            )
            metrics = (await http.get("/metrics")).text
            assert "onecard_ready 1.0" in metrics
            assert "onecard_recovery_records" in metrics

            stop.set()
            await until(lambda: health.phase == Phase.DRAINING, "the drain to begin")
            status, body = await probe("/readyz")
            assert (status, body["reasons"]) == (503, ["draining: a stop is in progress"])
            group.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/nowhere", "/metricsx"])
async def test_unknown_paths_are_404(path: str) -> None:
    with OpsServer("127.0.0.1", 0) as ops:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}") as http:
            assert (await http.get(path)).status_code == 404
