"""The service API: HTTP JSON for service-desk staff and partner systems, on its own port,
with a published OpenAPI document (docs/service-api.md).

auth.py         API tokens (hashed at rest) and the principal a request acts as
permissions.py  what each role may do: least privilege, as a table
schemas.py      request and response bodies (msgspec), which the OpenAPI document shows
operations.py   what each endpoint does, over the engine, the journal and the store
routes.py       the endpoint table: method, path, permission, bodies, handler
app.py          the ASGI application (Starlette): authentication, decoding, errors
openapi.py      the OpenAPI 3.1 document, generated from the endpoint table
server.py       serving it with hypercorn on asyncio (uvloop) or trio
service.py      everything the API needs, put together and run in the service's task group
"""
