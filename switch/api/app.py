"""The ASGI application (Starlette), generated from the endpoint table.

Each request: authenticate the bearer token (401) → check the role's permission (403) →
validate path and query parameters and decode the body against its schema (422) → run the
operation → encode the answer. Service errors map to statuses at this one boundary:
NotFound 404, IllegalTransition 409 (naming the state and the command), Refused 409 (a
rule says no: the request was well formed, so not 422), StoreUnavailable 503. 422 means the
request does not match its schema, and nothing else. Answers never echo request values
back, so a mistyped ID number cannot end up in a proxy's log of error bodies.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switch.api import schemas as s
from switch.api.auth import Principal, Tokens
from switch.api.openapi import openapi_document
from switch.api.operations import Operations
from switch.api.permissions import allowed
from switch.api.routes import ENDPOINTS, Endpoint, Param
from switch.errors import (
    IllegalTransition,
    InvalidIdentifier,
    NotFound,
    Refused,
    StoreUnavailable,
)
from switch.stats import LATENCY_BUCKETS_SECONDS, BucketHistogram

log = logging.getLogger("onecard.api")

# Largest request body: the longest request (a complaint of 2,000 characters, 6 KiB in
# UTF-8) with room for JSON escaping. Anything larger is refused before it is read whole.
BODY_BYTES_MAX = 32 * 1024
JSON = "application/json"
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{16,128})")


class ApiStatistics:
    """Answers by operation and status, and time per request; read by the metrics collector.
    Labels are operation ids and status codes only: never a card, token or value."""

    def __init__(self) -> None:
        self.answered: dict[tuple[str, int], int] = {}
        self.seconds = BucketHistogram(LATENCY_BUCKETS_SECONDS)

    def count(self, operation: str, status: int, seconds: float) -> None:
        key = (operation, status)
        self.answered[key] = self.answered.get(key, 0) + 1
        self.seconds.observe(seconds)


class Invalid(Exception):
    """A parameter or body does not match its schema (422)."""


def _error(status: int, error: str, detail: str, **extra: str) -> Response:
    body = s.ErrorAnswer(error, detail, extra.get("state"), extra.get("command"))
    return Response(msgspec.json.encode(body), status, media_type=JSON)


def _parameter(param: Param, raw: str | None) -> Any:
    if raw is None:
        if param.required:
            raise Invalid(f"missing parameter {param.name}")
        return None
    schema = param.schema
    kind = schema["type"]
    if kind == "integer":
        if not re.fullmatch(r"[0-9]{1,19}", raw):
            raise Invalid(f"{param.name} must be a positive integer")
        value: Any = int(raw)
        if not schema["minimum"] <= value <= schema["maximum"]:
            raise Invalid(f"{param.name} out of range")
        return value
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise Invalid(f"{param.name} must be true or false")
        return raw == "true"
    if "pattern" in schema and not re.fullmatch(schema["pattern"].strip("^$"), raw):
        raise Invalid(f"{param.name} does not have the required form")
    if "enum" in schema and raw not in schema["enum"]:
        raise Invalid(f"{param.name} must be one of {', '.join(schema['enum'])}")
    return raw


async def _body(request: Request, kind: type[msgspec.Struct]) -> msgspec.Struct:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > BODY_BYTES_MAX):
        raise Invalid(f"the body is limited to {BODY_BYTES_MAX} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > BODY_BYTES_MAX:
            raise Invalid(f"the body is limited to {BODY_BYTES_MAX} bytes")
    try:
        document = msgspec.json.decode(bytes(data))
    except msgspec.DecodeError:
        raise Invalid("the body is not valid JSON") from None
    try:
        return msgspec.convert(_integral(document), type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None


def _integral(value: Any) -> Any:
    """JSON has one number type: 40.0 is the integer 40 to JSON Schema, and so to us. No
    field of ours is a float, so every integral float becomes an int before validation."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


def build_app(operations: Operations, tokens: Tokens, statistics: ApiStatistics) -> Starlette:
    document = msgspec.json.encode(openapi_document())

    def authenticate(request: Request) -> Principal | None:
        match = _BEARER.fullmatch(request.headers.get("authorization", ""))
        return None if match is None else tokens.principal(match[1])

    def endpoint_for(endpoint: Endpoint) -> Any:
        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            response = await run(endpoint, request)
            statistics.count(
                endpoint.operation_id, response.status_code, time.perf_counter() - started
            )
            return response

        return handle

    async def run(endpoint: Endpoint, request: Request) -> Response:
        who = authenticate(request)
        if who is None:
            return _error(401, "unauthorised", "a valid bearer token is required")
        if not allowed(who.role, endpoint.permission):
            return _error(403, "forbidden", f"the {who.role.value} role may not do this")
        try:
            params: dict[str, Any] = {}
            for param in endpoint.params:
                source: Mapping[str, str] = (
                    request.path_params if param.location == "path" else request.query_params
                )
                params[param.name] = _parameter(param, source.get(param.name))
            body = None if endpoint.body is None else await _body(request, endpoint.body)
            answer = await endpoint.handler(operations, who, params, body)
        except Invalid as exc:
            return _error(422, "invalid", str(exc))
        except InvalidIdentifier as exc:
            return _error(422, "invalid", str(exc))
        except NotFound as exc:
            return _error(404, "not_found", str(exc))
        except IllegalTransition as exc:
            return _error(409, "illegal_transition", str(exc), state=exc.state, command=exc.command)
        except Refused as exc:
            return _error(409, "refused", str(exc))
        except StoreUnavailable as exc:
            log.error("store unavailable: %s", exc)
            return _error(503, "unavailable", "the store cannot answer now; try again")
        return Response(msgspec.json.encode(answer), endpoint.status, media_type=JSON)

    async def openapi(_request: Request) -> Response:
        return Response(document, media_type=JSON)

    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in ENDPOINTS:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    for path, methods in by_path.items():
        for method, endpoint in methods.items():
            routes.append(Route(path, endpoint_for(endpoint), methods=[method]))
    return Starlette(routes=routes)
