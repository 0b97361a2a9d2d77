"""The worker's door for inference: `POST /relay/<instance>/<path>` streams a request to that
instance's loopback llama-server, for gateways on other nodes. It listens with mutual TLS and
takes any member of the mesh (API clients included, for their gateways) that is not revoked;
without credentials it may only listen on loopback. llama-server's answers, errors included,
pass through unchanged; the relay's own errors carry RELAY_ERROR_HEADER, so the gateway
retries those elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Callable, Container

import aiohttp

from meshllm.core import access
from meshllm.core.errors import Forbidden, InvalidRequest, MeshError, NotFound
from meshllm.core.streaming import (
    RELAY_ERROR_HEADER,
    ClientGone,
    ClientWatch,
    Receive,
    Scope,
    Send,
    forward_headers,
    open_upstream,
    read_body,
    relay_response,
    request_headers,
    send_error,
)

logger = logging.getLogger(__name__)
PREFIX = "/relay/"


class RelayApp:
    def __init__(
        self,
        port_of: Callable[[str], int | None],
        session: Callable[[], aiohttp.ClientSession],
        *,
        mesh_id: str,
        revoked: Container[int],
        tls: bool,
    ) -> None:
        self._port_of = port_of
        self._session = session
        self._mesh_id = mesh_id
        self._revoked = revoked
        self._tls = tls  # else a loopback-only development relay: no peer to check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        try:
            await self._relay(scope, receive, send)
        except ClientGone:
            return
        except MeshError as exc:
            await send_error(send, exc, [(RELAY_ERROR_HEADER, exc.error_code)])

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._authorize(scope)
        if not scope["path"].startswith(PREFIX):
            raise NotFound("the relay answers only POST /relay/<instance>/v1/...")
        headers = request_headers(scope)
        instance_id, _, path = scope["path"][len(PREFIX) :].partition("/")
        if scope["method"] != "POST" or not path.startswith("v1/"):
            raise InvalidRequest("the relay only forwards POST /v1/... requests")
        port = self._port_of(instance_id)
        if port is None:
            raise NotFound(f"instance '{instance_id}' is not running on this worker")
        body = await read_body(receive, scope)
        query = scope.get("query_string", b"").decode()
        url = f"http://127.0.0.1:{port}/{path}" + (f"?{query}" if query else "")
        client = ClientWatch(receive)
        try:
            opened = await client.guard(
                open_upstream(self._session(), url, body, forward_headers(headers))
            )
            await relay_response(opened, client, send)
        finally:
            client.close()

    def _authorize(self, scope: Scope) -> None:
        if not self._tls:
            return
        reason = access.refusal(
            access.scope_identity(scope),
            mesh_id=self._mesh_id,
            allowed=access.MEMBERS,
            revoked=self._revoked,
        )
        if reason is not None:
            raise Forbidden(reason)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
