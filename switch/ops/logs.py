"""Log lines: text for people at a terminal, JSON lines for a log shipper; correlation ids.

    onecard --log-format json --log-level info run ...

Masking: every record passes the privacy guard (switch/privacy/masking.py) as it is created,
so its message and exception text are masked whatever the format. The structured fields
below are not part of the message, so the formatters mask them with the guard's own
`mask_text` before they are written (a caller's X-Request-Id could hold anything).

Correlation ids tie a line to the request or connection it is about:

    terminal channel  connection (the switch's number for the TCP connection), seq
    ISO 8583          bank, rrn (DE37) and stan (DE11) for a bank's message; terminal (DE41)
                      and stan for a merchant's
    service API       request_id: the caller's X-Request-Id, or one made up; sent back
                      in the answer's X-Request-Id

Code that logs about a connection or request passes them explicitly, e.g.
`log.warning("...", extra=correlate(connection=7, seq=12))`; the hot path logs nothing per
request, so this costs nothing there. The service API sets its request id once per request
in a context variable (`RequestIds`), and every line logged in that request carries it.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import secrets
import string
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from switch.privacy.masking import install_log_guard, mask_text

# The correlation fields a line may carry, in the order they are printed.
CORRELATION_FIELDS = ("request_id", "connection", "seq", "terminal", "stan", "bank", "rrn")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A caller's X-Request-Id is kept only if it looks like an id: it goes into every line of the
# request, so free text (or a line break forging a second log line) is replaced.
REQUEST_ID_SHAPE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID_HEADER = b"x-request-id"
# The ids we make up are letters only (16 of 26: 75 bits). The log guard masks digit runs
# that look like a mobile, card or citizen id number, and a random hex id held such a run
# about once in 400 times: its log lines then no longer matched the id the caller got.
NEW_REQUEST_ID_ALPHABET = string.ascii_lowercase
NEW_REQUEST_ID_LENGTH = 16


def new_request_id() -> str:
    """An id for a request that came without one; the log guard leaves it whole."""
    return "".join(secrets.choice(NEW_REQUEST_ID_ALPHABET) for _ in range(NEW_REQUEST_ID_LENGTH))


# Correlation ids of the request the current task works for (the service API).
CORRELATION: contextvars.ContextVar[Mapping[str, str | int] | None] = contextvars.ContextVar(
    "onecard_correlation", default=None
)


def correlate(**ids: str | int) -> dict[str, Any]:
    """`extra=` for a log call about a connection or request: `correlate(connection=7)`."""
    unknown = set(ids) - set(CORRELATION_FIELDS)
    if unknown:
        raise ValueError(f"not correlation fields: {sorted(unknown)}")
    return {"correlation": ids}


_factory_installed = False


def install_correlation() -> None:
    """Stamp every log record, as it is created, with the correlation ids of the task that
    logs it (idempotent). At creation, not when formatted: a handler may format later, in
    another thread or context (a queue handler, a test's capture)."""
    global _factory_installed  # noqa: PLW0603 - one factory per process, like the guard
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ids = CORRELATION.get()
        if ids:
            record.task_correlation = ids
        return record

    logging.setLogRecordFactory(factory)


def correlation_of(record: logging.LogRecord) -> dict[str, str | int]:
    """The record's correlation ids, masked: its task's (an API request) and the call's own
    (`extra=correlate(...)`)."""
    merged = dict(getattr(record, "task_correlation", {}))
    merged.update(getattr(record, "correlation", {}))
    return {name: _masked(merged[name]) for name in CORRELATION_FIELDS if name in merged}


def _masked(value: str | int) -> str | int:
    return mask_text(value) if isinstance(value, str) else value


class TextFormatter(logging.Formatter):
    """The classic line, with the correlation ids appended: `... [connection=7 seq=12]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = correlation_of(record)
        if not ids:
            return line
        return f"{line} [{' '.join(f'{name}={value}' for name, value in ids.items())}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, the correlation
    ids present, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(correlation_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    """Log to stderr in `log_format`, masked. Like logging.basicConfig it changes nothing
    when the root logger has handlers already (a test runner's, an embedding program's)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    install_log_guard()  # no citizen ID or name reaches a log line (switch/privacy)
    install_correlation()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIds:
    """ASGI middleware: a request id for every HTTP request, in the log lines logged while
    it runs and in the answer's X-Request-Id header."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        install_correlation()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER:
                text = value.decode("latin-1")
                request_id = text if REQUEST_ID_SHAPE.fullmatch(text) else ""
        request_id = request_id or new_request_id()
        token = CORRELATION.set({"request_id": request_id})

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CORRELATION.reset(token)
