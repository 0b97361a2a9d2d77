"""The data plane: one streamed HTTP hop, bytes passed through as they arrive.

Shared by the gateway (client → llama-server or a remote worker relay) and the worker relay
(gateway → its loopback llama-server). Raw ASGI on our side and aiohttp toward upstream: the
cheapest pair measured (docs/BENCHMARKS.md). The upstream response is opened and its first
chunk awaited before anything is sent to the client, so a failure up to that point can be
retried elsewhere; after the first byte there are no retries. Every wait is bounded: the
request body (size and time), the upstream's headers and first byte. The client is watched
from the moment its request has been read: a disconnect at any point, before the upstream
has answered too, closes the upstream connection, which makes llama-server stop generating
and free the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from .errors import (
    MeshError,
    PayloadTooLarge,
    RequestTimeout,
    UpstreamError,
    UpstreamTimeout,
    openai_body,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024 * 1024
# Between two chunks of an answer: llama-server sends a token every few ms to seconds; a peer
# behind a cut link sends nothing, and TCP would wait for minutes.
STREAM_IDLE_TIMEOUT_S = 120.0
BODY_TIMEOUT_S = 60.0
# Set on every answer a worker relay makes itself (its own failure: unknown instance, wrong
# secret, llama-server unreachable), so a gateway can tell those from llama-server's answers.
RELAY_ERROR_HEADER = "x-mesh-relay-error"
MAX_ERROR_BODY_BYTES = 64 * 1024
T = TypeVar("T")
# Hop-by-hop and recomputed headers are not copied between the two connections, nor an
# upstream's CORS headers (llama-server allows every origin; the gateway decides, gateway/guard).
_SKIP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "upgrade",
    "proxy-authorization",
    "te",
    "trailer",
    "authorization",
}


def upstream_session(**connector: Any) -> aiohttp.ClientSession:
    """llama-server closes the connection after every streamed response despite announcing
    keep-alive; a pooled connection would then fail with "Cannot write to closing transport",
    so connections toward it are not reused."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0, **connector),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        auto_decompress=False,
    )


def relay_session(context: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """Toward other nodes' worker relays (uvicorn keeps connections alive properly): pooled
    keep-alive connections, so a TLS handshake is paid once per connection, not per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=context if context is not None else True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        auto_decompress=False,
    )


async def read_body(
    receive: Receive,
    scope: Scope,
    *,
    limit: int = MAX_BODY_BYTES,
    timeout_s: float = BODY_TIMEOUT_S,
) -> bytes:
    """The whole request body: 413 when it is (or says it will be) larger than `limit`, 408
    when it has not all arrived within `timeout_s`."""
    declared = request_headers(scope).get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is larger than {limit} bytes")
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(receive, limit)
    except TimeoutError as exc:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:.0f}s") from exc


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ClientWatch:
    """Watches a client whose request body has been read: `gone` is set when it disconnects.
    `guard` runs a step of the request that ends early (ClientGone) if the client leaves."""

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.Event()
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    async def guard(self, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        left = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({task, left}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientGone()

    def close(self) -> None:
        self._task.cancel()


class ClientGone(Exception):
    """The client disconnected."""


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def send_json(
    send: Send, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.encode(), v.encode()) for k, v in headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: MeshError, headers: Iterable[tuple[str, str]] = ()) -> None:
    await send_json(send, error.http_status, openai_body(error), headers)


@dataclass
class OpenedUpstream:
    response: aiohttp.ClientResponse
    first_chunk: bytes

    @property
    def status(self) -> int:
        return self.response.status

    def close(self) -> None:
        self.response.close()


async def open_upstream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout_s: float = 5.0,
    first_byte_timeout_s: float = 600.0,
) -> OpenedUpstream:
    """POST and wait for the status line and the first body chunk, whatever the status: the
    caller decides what an error status means. Raises UpstreamError when the upstream cannot
    be reached or breaks before its first byte, UpstreamTimeout when its headers and first
    byte take longer than `first_byte_timeout_s`."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    response: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(first_byte_timeout_s):
            response = await session.post(url, data=body, headers=headers, timeout=timeout)
            first = await response.content.readany()
    except TimeoutError as exc:
        if response is not None:
            response.close()
        raise UpstreamTimeout(f"{url} sent nothing for {first_byte_timeout_s:.0f}s") from exc
    except (aiohttp.ClientError, OSError) as exc:
        if response is not None:
            response.close()
        raise UpstreamError(f"cannot reach {url}: {exc}") from exc
    return OpenedUpstream(response, first)


async def read_error_body(opened: OpenedUpstream, timeout_s: float = 10.0) -> bytes:
    """The rest of an error answer, at most MAX_ERROR_BODY_BYTES, then the connection closes."""
    body = opened.first_chunk
    try:
        async with asyncio.timeout(timeout_s):
            while len(body) < MAX_ERROR_BODY_BYTES:
                chunk = await opened.response.content.readany()
                if not chunk:
                    break
                body += chunk
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass
    finally:
        opened.close()
    return body[:MAX_ERROR_BODY_BYTES]


async def relay_response(
    opened: OpenedUpstream,
    client: ClientWatch,
    send: Send,
    *,
    extra_headers: Iterable[tuple[str, str]] = (),
    on_chunk: Callable[[bytes], None] | None = None,
    idle_timeout_s: float = STREAM_IDLE_TIMEOUT_S,
) -> bool:
    """Stream the opened upstream response to the client. Returns False if the client left
    (the upstream connection is then closed, cancelling generation) or upstream broke or
    said nothing for `idle_timeout_s` (a peer behind a cut link never says it is gone)."""
    response = opened.response
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.items()
        if k.lower() not in _SKIP_HEADERS and not k.lower().startswith("access-control-")
    ]
    headers += [(k.encode(), v.encode()) for k, v in extra_headers]
    try:
        return await client.guard(_pump(opened, send, headers, on_chunk, idle_timeout_s))
    except ClientGone:
        return False
    finally:
        response.close()


async def _pump(
    opened: OpenedUpstream,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    on_chunk: Callable[[bytes], None] | None,
    idle_timeout_s: float,
) -> bool:
    response = opened.response
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    chunk = opened.first_chunk
    try:
        while chunk:
            if on_chunk is not None:
                on_chunk(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await asyncio.wait_for(response.content.readany(), idle_timeout_s)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = f"no data for {idle_timeout_s:.0f}s" if isinstance(exc, TimeoutError) else str(exc)
        await send({"type": "http.response.body", "body": _sse_error(reason), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return False
    await send({"type": "http.response.body", "body": b""})
    return True


def _sse_error(message: str) -> bytes:
    payload = {
        "error": {
            "message": f"upstream failed mid-stream: {message}",
            "type": "server_error",
            "code": "upstream_error",
            "param": None,
        }
    }
    return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"


# Request headers passed upstream: what llama-server reads, nothing else. A client's cookies,
# credentials or a thousand junk headers stay at the door.
_FORWARDED_HEADERS = {"content-type", "accept", "x-request-id", "x-session-id", "user-agent"}


def forward_headers(
    incoming: dict[str, str], extra: dict[str, str] | None = None
) -> dict[str, str]:
    headers = {k: v for k, v in incoming.items() if k in _FORWARDED_HEADERS}
    headers.update(extra or {})
    return headers
