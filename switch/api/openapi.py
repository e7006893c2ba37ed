"""The OpenAPI 3.1 document of the service API, generated from the endpoint table and the
msgspec schemas, so the published document and the running API cannot drift apart."""

from __future__ import annotations

from typing import Any

import msgspec

from switch.api import schemas as s
from switch.api.routes import ENDPOINTS

TITLE = "onecard service API"
VERSION = "1.0.0"
REF = "#/components/schemas/{name}"
_ERROR_MEANINGS = {
    401: "No valid bearer token.",
    403: "The caller's role may not do this.",
    404: "No such card, holder, complaint or flag.",
    409: "Not allowed in the current state (names the state and the command), or a rule "
    "refuses it (error `refused`: eligibility, PIN rules, unsettled accounts, evidence).",
    422: "The request does not match its schema.",
    503: "The store cannot answer now (the PostgreSQL projection is behind); retry.",
}


def openapi_document() -> dict[str, Any]:
    types: set[type[msgspec.Struct]] = {s.ErrorAnswer}
    for endpoint in ENDPOINTS:
        types.add(endpoint.answer)
        if endpoint.body is not None:
            types.add(endpoint.body)
    (_, components) = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template=REF
    )
    error = {"application/json": {"schema": {"$ref": REF.format(name="ErrorAnswer")}}}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        responses: dict[str, Any] = {
            str(endpoint.status): {
                "description": "Done; durable in the journal.",
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(name=endpoint.answer.__name__)}
                    }
                },
            }
        }
        for status in sorted({401, 403, 422, 503, *endpoint.errors}):
            responses[str(status)] = {"description": _ERROR_MEANINGS[status], "content": error}
        operation: dict[str, Any] = {
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
            "description": f"Requires the `{endpoint.permission.value}` permission.",
            "parameters": [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required,
                    "description": p.description,
                    "schema": dict(p.schema),
                }
                for p in endpoint.params
            ],
            "responses": responses,
            "security": [{"bearer": []}],
        }
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(name=endpoint.body.__name__)}
                    }
                },
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "For service-desk staff and partner systems (docs/service-api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
