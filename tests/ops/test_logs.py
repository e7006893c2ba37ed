"""Log lines: JSON and text formats, correlation ids from each channel, masking through the
privacy guard."""

from __future__ import annotations

import json
import logging
import struct
import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from protocols.terminal import FRAME_LENGTH_MAX
from switch.client import ClosedByServer, TerminalClient
from switch.ops.logs import (
    REQUEST_ID_SHAPE,
    JsonFormatter,
    RequestIds,
    TextFormatter,
    configure_logging,
    correlate,
    new_request_id,
)
from switch.privacy.masking import install_log_guard, mask_text
from tests.conftest import Running

CITIZEN_ID = "420302196503150014"
log = logging.getLogger("onecard.test")


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    install_log_guard()  # what configure_logging does for every process
    return log.makeRecord(log.name, logging.WARNING, __file__, 1, message, args, None, extra=extra)


def test_json_line_carries_correlation_and_masks_everything() -> None:
    record = _record(
        "holder %s at gate", CITIZEN_ID, **correlate(connection=7, seq=12, request_id="王小明")
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["logger"] == "onecard.test"
    assert line["time"].endswith("Z")
    assert line["message"] == "holder 4203**********0014 at gate"
    assert (line["connection"], line["seq"], line["request_id"]) == (7, 12, "***")
    assert CITIZEN_ID not in json.dumps(line)


def test_json_line_carries_the_exception_masked() -> None:
    install_log_guard()
    try:
        raise ValueError(f"bad holder {CITIZEN_ID}")
    except ValueError:
        record = log.makeRecord(log.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad holder 4203**********0014" in line["exception"]
    assert CITIZEN_ID not in line["exception"]


def test_text_line_appends_the_correlation_ids() -> None:
    record = _record("late answer", **correlate(bank="ABC", rrn="000000000042", stan="000007"))
    line = TextFormatter().format(record)
    assert line.endswith("onecard.test: late answer [stan=000007 bank=ABC rrn=000000000042]")
    assert TextFormatter().format(_record("plain")).endswith("onecard.test: plain")


def test_only_known_correlation_fields() -> None:
    with pytest.raises(ValueError, match="card"):
        correlate(card="X00000001")


def test_configure_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="xml"):
        configure_logging("xml")


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    """Records of onecard's loggers, as a handler sees them (after the guard)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("onecard")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent", "kept"),
    [("desk-7f3a", True), ("two\nlines", False), (None, False)],
    ids=["caller's", "not an id", "none"],
)
async def test_api_request_ids(
    captured: list[logging.LogRecord], sent: str | None, kept: bool
) -> None:
    async def handler(_request: Request) -> Response:
        logging.getLogger("onecard.api").warning("store unavailable")
        return Response("ok")

    app = RequestIds(Starlette(routes=[Route("/x", handler)]))
    headers = {} if sent is None else {"x-request-id": sent}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://desk") as client:
        response = await client.get("/x", headers=headers)
    request_id = response.headers["x-request-id"]
    assert REQUEST_ID_SHAPE.fullmatch(request_id)
    assert (request_id == sent) is kept
    [record] = [r for r in captured if r.getMessage() == "store unavailable"]
    assert json.loads(JsonFormatter().format(record))["request_id"] == request_id


def test_request_ids_we_make_up_are_never_masked() -> None:
    # A hex id once held "16230258727", a mobile number to the guard, and was logged as
    # "162****8727c6af0" while the caller got it whole.
    assert mask_text("16230258727c6af0") != "16230258727c6af0"
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(REQUEST_ID_SHAPE.fullmatch(i) and mask_text(i) == i for i in ids)


@pytest.mark.anyio
async def test_terminal_framing_error_logged_with_connection_and_seq(
    running: Running, captured: list[logging.LogRecord]
) -> None:
    async with await TerminalClient.connect(
        running.host, running.port, "G0001", running.keys.terminals["G0001"]
    ) as client:
        await client.send_raw(struct.pack(">I", FRAME_LENGTH_MAX + 1) + b"x" * 16)
        assert (await client.receive()).code == "30"
        with pytest.raises(ClosedByServer):
            await client.receive()
    [record] = [r for r in captured if "cannot be framed" in r.getMessage()]
    line = json.loads(JsonFormatter().format(record))
    assert (line["connection"], line["seq"], line["level"]) == (1, 0, "warning")
