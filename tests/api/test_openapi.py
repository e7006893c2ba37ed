"""The published OpenAPI document, checked against the live API by a bounded schemathesis
run: every answer must match its documented status, content type and schema, and nothing
may answer 5xx. The switch serves in a thread of its own (a blocking portal) because
schemathesis calls synchronously."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.core.result import Ok

from switch.config import EngineConfig
from switch.demo import DemoSpec, create_demo
from switch.privacy.purposes import Role
from tests.api.harness import desk_config, running_desk
from tests.conftest import FakeClock

# Examples per operation: with ~30 operations, a few dozen to a hundred requests in all,
# a few seconds of CI time, and enough to try every documented error path.
EXAMPLES_PER_OPERATION = 3
DEMO_CARDS = 32


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    authorization: str


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    create_demo(data_dir, DemoSpec(cards=DEMO_CARDS), EngineConfig())
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(
            running_desk(data_dir, FakeClock(), desk_config())
        ) as desk,
    ):
        yield LiveApi(
            f"http://127.0.0.1:{desk.api.port}",
            desk.client(Role.SUPERVISOR).headers["authorization"],
        )


def test_api_matches_its_openapi_document(live_api: LiveApi) -> None:
    # Driven by hand rather than through schemathesis's pytest plugin: its lazy fixtures
    # predate the pytest this project runs, and one loop over the live document's
    # operations is all this needs.
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    headers = {"Authorization": live_api.authorization}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself must be valid
        operations.append(result.ok())
    assert len(operations) >= 25
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same requests on every run: a failure reproduces
        )
        @given(case=operation.as_strategy())
        def check(case: Case[Any]) -> None:
            case.call_and_validate(base_url=live_api.base_url, headers=headers)

        check()


def test_openapi_document_is_published(live_api: LiveApi) -> None:
    document = httpx.get(f"{live_api.base_url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/cards/{card}/loss" in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
