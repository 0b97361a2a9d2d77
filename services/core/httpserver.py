"""What every HTTP server of ours does beyond uvicorn's defaults, so no client can hold a
connection or a worker forever, and every error it answers is JSON in OpenAI's shape:

- `BoundedHttpProtocol`: a deadline for a request's headers (uvicorn waits forever for a
  client that connects and sends nothing, or sends its headers a byte at a time), limits on
  their number and size (431), and JSON bodies for the errors the protocol answers itself;
- the peer's TLS client certificate, when there is one, in the scope as ASGI's `tls`
  extension (`client_cert_chain`, PEM), which uvicorn itself does not fill in;
- `ErrorShield`: an ASGI wrapper that turns a bug anywhere below it into a logged traceback
  and a 500 JSON answer, never a text/plain traceback or a dropped connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import InvalidRequest, MeshError, openai_body
from .streaming import Receive, Scope, Send, send_error

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


class HeadersTooLarge(InvalidRequest):
    http_status = 431
    default_code = "headers_too_large"


class BoundedHttpProtocol(HttpToolsProtocol):
    header_timeout_s = HEADER_TIMEOUT_S
    _header_deadline: asyncio.TimerHandle | None = None
    _rejection: MeshError | None = None
    _header_bytes = 0
    _client_cert: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._client_cert = peer_certificate(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._rejection = None
        self._arm_header_deadline()

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value)
        if len(self.headers) > MAX_HEADERS or self._header_bytes > MAX_HEADER_BYTES:
            self._rejection = HeadersTooLarge(
                f"request headers are over the limit ({MAX_HEADERS} headers, "
                f"{MAX_HEADER_BYTES} bytes)"
            )
            raise ValueError("headers over the limit")  # httptools stops parsing: see below

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()
        if self._client_cert is not None:  # the request's task has not run yet
            extensions = self.scope.setdefault("extensions", {})
            extensions["tls"] = {"client_cert_chain": [self._client_cert]}

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse (and to our limits), as JSON."""
        error = self._rejection or InvalidRequest(f"malformed HTTP request: {msg}")
        body = json.dumps(openai_body(error)).encode()
        head = (
            f"HTTP/1.1 {error.http_status} {_REASONS.get(error.http_status, 'Bad Request')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            logger.info(
                "closing a connection whose request headers took over %.0fs", self.header_timeout_s
            )
            self.transport.close()


def peer_certificate(transport: asyncio.BaseTransport) -> str | None:
    """The verified client certificate of a TLS connection, PEM; None without one."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der) if der else None


_REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large"}


class ErrorShield:
    """Runs an ASGI app; a bug below becomes a logged traceback and a JSON 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if not started:
                await send_error(send, MeshError("internal error; it has been logged"))
