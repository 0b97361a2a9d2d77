"""The worker's HTTP door: `POST /relay/<instance>/<path>` streams a request to that
instance's loopback llama-server, for gateways on other nodes. It requires the mesh secret
(`Authorization: Bearer <secret>`). Every other path goes to the probe app (/health,
/readyz, /metrics). llama-server's answers, errors included, pass through unchanged; the
relay's own errors carry RELAY_ERROR_HEADER, so the gateway retries those elsewhere."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import aiohttp

from meshllm.core.errors import InvalidRequest, MeshError, NotFound, Unavailable
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


class Unauthorized(MeshError):
    http_status = 401
    openai_type = "invalid_request_error"
    default_code = "unauthorized"


class RelayApp:
    def __init__(
        self,
        secret: str,
        port_of: Callable[[str], int | None],
        session: Callable[[], aiohttp.ClientSession],
        fallback: Callable[[Scope, Receive, Send], object],
    ) -> None:
        self._secret = secret.encode()
        self._port_of = port_of
        self._session = session
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self._fallback(scope, receive, send)  # type: ignore[misc]
            return
        try:
            await self._relay(scope, receive, send)
        except ClientGone:
            return
        except MeshError as exc:
            await send_error(send, exc, [(RELAY_ERROR_HEADER, exc.error_code)])

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        self._authorize(headers.get("authorization", ""))
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

    def _authorize(self, header: str) -> None:
        if not self._secret:
            raise Unavailable("this worker's relay is off: it was started without a mesh secret")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._secret):
            raise Unauthorized("missing or wrong mesh secret")
