"""The switch with its service API in the test's own event loop, an HTTP client per role,
and the store under test: embedded, or PostgreSQL in a throwaway schema of the real server."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

from switch.api.auth import Tokens
from switch.api.service import ApiService
from switch.client import TerminalClient
from switch.config import Config, EngineConfig, ServerConfig
from switch.core import Switch, open_switch
from switch.keystore import KeyStore
from switch.lifecycle.config import PIN_COST_LOG2_MIN, LifecycleConfig
from switch.privacy.purposes import Role
from switch.service import run_service
from switch.store.config import StoreConfig
from tests.conftest import FakeClock

POSTGRES_SERVER = os.environ.get(
    "ONECARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
# A valid citizen ID number of nobody among the demo holders (facts.md's examples).
APPLICANT_ID = "420302196503150014"
ELDERLY_APPLICANT_ID = "42030319580101002X"


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A dsn whose search_path is a fresh schema of the real server; dropped afterwards."""
    import asyncpg  # noqa: PLC0415 - asyncio only

    schema = f"onecard_test_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(POSTGRES_SERVER)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in POSTGRES_SERVER else "?"
        yield f"{POSTGRES_SERVER}{separator}search_path={schema}"
    finally:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()


@dataclass
class Desk:
    """The running switch with its API, a client per role and terminal clients."""

    switch: Switch
    api: ApiService
    port: int
    clock: FakeClock
    keys: KeyStore
    clients: dict[Role, httpx.AsyncClient]
    metrics_port: int
    terminals: dict[str, TerminalClient] = field(default_factory=dict)
    host: str = "127.0.0.1"

    def client(self, role: Role = Role.SERVICE_DESK) -> httpx.AsyncClient:
        return self.clients[role]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        role: Role = Role.SERVICE_DESK,
        expect: int = 200,
        params: dict[str, str] | None = None,
    ) -> Any:
        response = await self.clients[role].request(method, path, json=body, params=params)
        assert response.status_code == expect, (response.status_code, response.text)
        return response.json()

    async def terminal(self, terminal_id: str) -> TerminalClient:
        if terminal_id not in self.terminals:
            self.terminals[terminal_id] = await TerminalClient.connect(
                self.host, self.port, terminal_id, self.keys.terminals[terminal_id]
            )
        return self.terminals[terminal_id]

    async def tap(self, terminal_id: str, card: str) -> str:
        client = await self.terminal(terminal_id)
        response = await client.request(client.tap(card))
        return response.code


def desk_config(store: StoreConfig | None = None) -> Config:
    return Config(
        engine=EngineConfig(),
        server=ServerConfig(port=0, metrics_port=0, api_port=0),
        lifecycle=LifecycleConfig(pin_cost_log2=PIN_COST_LOG2_MIN),
        store=store or StoreConfig(),
    )


@asynccontextmanager
async def running_desk(data_dir: Path, clock: FakeClock, config: Config) -> AsyncIterator[Desk]:
    switch = open_switch(data_dir, config, clock)
    tokens = Tokens()
    secrets_by_role = {
        role: tokens.add(f"test-{role.value.replace('_', '-')}", role) for role in Role
    }
    api = ApiService(switch, config, tokens, background=False)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        port, metrics_port = await group.start(
            lambda task_status: run_service(switch, config, stop, task_status=task_status, api=api)
        )
        base = f"http://127.0.0.1:{api.port}"
        clients = {
            role: httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"})
            for role, token in secrets_by_role.items()
        }
        desk = Desk(switch, api, port, clock, KeyStore.load(data_dir), clients, metrics_port)
        try:
            yield desk
        finally:
            for client in clients.values():
                await client.aclose()
            for terminal in desk.terminals.values():
                await terminal.stream.aclose()
            stop.set()


def decode(data: bytes, kind: type[Any]) -> Any:
    return msgspec.json.decode(data, type=kind)
