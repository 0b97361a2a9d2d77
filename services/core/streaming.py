"""The data plane: one streamed HTTP hop, bytes passed through as they arrive.

Shared by the gateway (client → llama-server or a remote worker relay) and the worker relay
(gateway → its loopback llama-server). Raw ASGI on our side and aiohttp toward upstream: the
cheapest pair measured (docs/BENCHMARKS.md). The upstream response is opened and its first
chunk awaited before anything is sent to the client, so a failure up to that point can be
retried elsewhere; after the first byte there are no retries. A client disconnect closes the
upstream connection, which makes llama-server stop generating and free the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .errors import InvalidRequest, MeshError, UpstreamError, UpstreamTimeout, openai_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024 * 1024
# Hop-by-hop and recomputed headers are not copied between the two connections.
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


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


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


async def open_upstream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout_s: float = 5.0,
    first_byte_timeout_s: float = 600.0,
) -> OpenedUpstream:
    """POST and wait for the status line and the first body chunk. A connect failure or a
    5xx before the first byte raises UpstreamError (retryable elsewhere)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    try:
        response = await session.post(url, data=body, headers=headers, timeout=timeout)
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(f"cannot reach {url}: {exc}") from exc
    try:
        if response.status >= 500:
            text = (await response.content.read(2048)).decode(errors="replace")
            raise UpstreamError(f"{url} answered {response.status}: {text[:300]}")
        async with asyncio.timeout(first_byte_timeout_s):
            first = await response.content.readany()
    except TimeoutError as exc:
        response.close()
        raise UpstreamTimeout(f"{url} sent nothing for {first_byte_timeout_s:.0f}s") from exc
    except (aiohttp.ClientError, OSError) as exc:
        response.close()
        raise UpstreamError(f"{url} failed before its first byte: {exc}") from exc
    except UpstreamError:
        response.close()
        raise
    return OpenedUpstream(response, first)


async def relay_response(
    opened: OpenedUpstream,
    receive: Receive,
    send: Send,
    *,
    extra_headers: Iterable[tuple[str, str]] = (),
    on_chunk: Callable[[bytes], None] | None = None,
) -> bool:
    """Stream the opened upstream response to the client. Returns False if the client left
    (the upstream connection is then closed, cancelling generation) or upstream broke."""
    response = opened.response
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.items()
        if k.lower() not in _SKIP_HEADERS
    ]
    headers += [(k.encode(), v.encode()) for k, v in extra_headers]
    pump = asyncio.ensure_future(_pump(opened, send, headers, on_chunk))
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            return pump.result()
        return False  # client gone: fall through to closing upstream
    finally:
        for task in (pump, watcher):
            task.cancel()
        for task in (pump, watcher):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        response.close()


async def _pump(
    opened: OpenedUpstream,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    on_chunk: Callable[[bytes], None] | None,
) -> bool:
    response = opened.response
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    chunk = opened.first_chunk
    try:
        while chunk:
            if on_chunk is not None:
                on_chunk(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await response.content.readany()
    except (aiohttp.ClientError, OSError) as exc:
        await send({"type": "http.response.body", "body": _sse_error(str(exc)), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return False
    await send({"type": "http.response.body", "body": b""})
    return True


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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


def forward_headers(
    incoming: dict[str, str], extra: dict[str, str] | None = None
) -> dict[str, str]:
    headers = {k: v for k, v in incoming.items() if k not in _SKIP_HEADERS}
    headers.update(extra or {})
    return headers
