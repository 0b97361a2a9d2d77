"""Forwarding an inference request: validate what routing needs, rank the replicas, open the
upstream (retrying another replica until the first byte), then stream it through.

What an upstream answer means is decided by `judge`: a replica that cannot be reached, a
relay that failed, or a llama-server that is loading is a replica's failure, tried elsewhere;
any other error status is llama-server's answer to this request's input, passed back in
OpenAI's error shape without blaming the replica."""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from meshllm.core.errors import (
    InvalidRequest,
    MeshError,
    NotFound,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
    excerpt,
)
from meshllm.core.logging import request_id
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.streaming import (
    RELAY_ERROR_HEADER,
    ClientGone,
    ClientWatch,
    OpenedUpstream,
    Receive,
    Scope,
    Send,
    forward_headers,
    open_upstream,
    read_body,
    read_error_body,
    relay_response,
    request_headers,
    send_error,
)

from . import metrics
from .endpoints import EndpointTable
from .routing import Router, RouteRequest, session_key
from .settings import ProxySettings

logger = logging.getLogger(__name__)

# route → the field that must be present besides `model` (None: llama-server checks the rest).
# /v1/completions: OpenAI's schema makes `prompt` nullable, and no prompt means "from the
# start of a document", which is what llama-server does with an empty one.
ROUTES: dict[str, str | None] = {
    "/v1/chat/completions": "messages",
    "/v1/completions": None,
    "/v1/embeddings": "input",
    "/v1/responses": None,
    "/v1/messages": "messages",
}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    stream: bool
    body: bytes  # what goes upstream: the client's body, or it completed with defaults
    payload: dict[str, Any]  # the parsed body: what a session key is read from, when needed


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {excerpt(text, 20)} is out of range")
    return value


def parse_json(body: bytes) -> object:
    """Strict JSON: no NaN or Infinity, no number beyond a double, bounded nesting."""
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as exc:
        raise InvalidRequest("request body is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidRequest(f"request body is not valid JSON: {excerpt(str(exc), 200)}") from exc


def parse_request(body: bytes, route: str) -> InferenceRequest:
    """Only what routing needs; llama-server validates the rest."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: a model name from GET /v1/models", param="model")
    required = ROUTES[route]
    if required is not None:
        value = payload.get(required)
        if value is None or (required == "messages" and (not isinstance(value, list) or not value)):
            kind = "must be a non-empty list" if required == "messages" else "is required"
            raise InvalidRequest(f"'{required}' {kind} for {route}", param=required)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", param="stream")
    if route == "/v1/completions" and payload.get("prompt") is None:
        body = json.dumps({**payload, "prompt": ""}).encode()
    return InferenceRequest(model, bool(stream), body, payload)


def request_id_of(headers: dict[str, str]) -> str:
    """The client's X-Request-Id when it is a plain token, else a new one."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class Verdict(StrEnum):
    RELAY = "relay"  # stream the answer to the client
    RETRY = "retry"  # the replica failed: try the next one
    REJECT = "reject"  # the replica answered that this input is wrong: tell the client


def judge(status: int, relay_error: bool) -> Verdict:
    if relay_error or status in (502, 503, 504):
        return Verdict.RETRY
    if status >= 400:
        return Verdict.REJECT
    return Verdict.RELAY


def rejection(status: int, raw: bytes) -> MeshError:
    """llama-server's refusal of a request, in OpenAI's shape. Its 4xx keep their status; it
    answers input it cannot handle (a lone surrogate, a number it cannot hold) with a 5xx,
    which is still the input's fault, so those become 400."""
    message, kind = "", ""
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        kind = error.get("type") if isinstance(error.get("type"), str) else ""
    elif isinstance(error, str):
        message = error
    return InvalidRequest(
        excerpt(message or raw.decode(errors="replace").strip(), 1000)
        or f"the model server refused the request ({status})",
        http_status=status if 400 <= status < 500 else 400,
        error_code=kind if re.fullmatch(r"[a-z_]{1,64}", kind) else None,
    )


_TOKEN_FIELD = re.compile(rb'"(?:content|text|delta)":"')
_TAIL = len(b'"content":"')  # bytes kept for a field split across chunks


class TokenCounter:
    """Counts generated tokens without decoding the stream: llama-server sends one SSE event
    per token, carrying a non-empty `content` (chat), `text` (completions, messages) or
    `delta` (responses); for a plain JSON answer, its `usage` block. A field is counted once
    the byte after it is known (an empty value is no token), wherever the network cut the
    stream into chunks: the last few bytes of a chunk are looked at again with the next."""

    def __init__(
        self, stream: bool, on_gap: Callable[[float], None] = lambda seconds: None
    ) -> None:
        """`on_gap` hears the time between tokens of a stream (a chunk of several tokens
        counts as that many equal gaps)."""
        self.stream = stream
        self.events = 0
        self._on_gap = on_gap
        self._last = 0.0
        self._body: list[bytes] = []
        self._size = 0
        self._tail = b""  # the end of the stream so far, which a field may straddle
        self._seen = 0  # where in the tail the fields not looked at yet begin

    def __call__(self, chunk: bytes) -> None:
        if self.stream:
            tokens = self._count_fields(self._tail + chunk)
            self.events += tokens
            if tokens:
                now = time.perf_counter()
                if self._last:
                    for _ in range(tokens):
                        self._on_gap((now - self._last) / tokens)
                self._last = now
        elif self._size < 1 << 20:
            self._body.append(chunk)
            self._size += len(chunk)

    def _count_fields(self, data: bytes) -> int:
        tokens, seen = 0, self._seen
        for field in _TOKEN_FIELD.finditer(data, self._seen):
            if field.end() >= len(data):
                break  # the byte that says whether it is empty is still to come
            tokens += data[field.end()] != ord('"')
            seen = field.end()
        cut = max(0, len(data) - _TAIL)
        self._tail, self._seen = data[cut:], max(0, seen - cut)
        return tokens

    def usage(self) -> tuple[int, int]:
        """(prompt, completion) tokens, as far as known."""
        if self.stream:
            return 0, self.events
        try:
            usage = json.loads(b"".join(self._body)).get("usage") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return 0, 0
        return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))


class Proxy:
    def __init__(
        self,
        settings: ProxySettings,
        node: str,
        table: EndpointTable,
        router: Router,
        local: Callable[[], aiohttp.ClientSession],
        relay: Callable[[], aiohttp.ClientSession],
        on_request: Callable[[str], None] = lambda model: None,
    ) -> None:
        """`local` reaches llama-server on this node; `relay` reaches other nodes' worker
        relays (pooled, with this node's certificate when the mesh runs TLS); `on_request`
        hears of every request for a model the mesh knows (the demand it shows)."""
        self._settings = settings
        self._node = node
        self._table = table
        self._router = router
        self._local = local
        self._relay = relay
        self._on_request = on_request

    def target(self, endpoint: pb.Endpoint, route: str) -> tuple[str, aiohttp.ClientSession]:
        if endpoint.node == self._node and not self._settings.force_relay:
            return endpoint.local_url + route, self._local()
        return f"{endpoint.relay_url}/relay/{endpoint.instance_id}{route}", self._relay()

    async def handle(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        started = time.perf_counter()
        headers = request_headers(scope)
        rid = request_id_of(headers)
        token = request_id.set(rid)
        reply_headers = [("x-request-id", rid)]
        label = "unknown"
        status = 500
        client: ClientWatch | None = None
        try:
            body = await read_body(
                receive,
                scope,
                limit=self._settings.max_body_bytes,
                timeout_s=self._settings.body_timeout_s,
            )
            request = parse_request(body, route)
            model = self._table.resolve(request.model)
            label = model if self._table.is_known(model) else "unknown"
            if label != "unknown":
                self._on_request(model)
            client = ClientWatch(receive)
            gauge = metrics.IN_FLIGHT.labels(label)
            gauge.inc()
            try:
                status = await self._forward(
                    model, request, headers, client, send, route, reply_headers, started
                )
            finally:
                gauge.dec()
        except ClientGone:
            status = 499
        except MeshError as exc:
            status = exc.http_status
            metrics.ERRORS.labels(label, route, exc.error_code).inc()
            if isinstance(exc, Unavailable):
                reply_headers.append(("retry-after", str(self._settings.retry_after_s)))
            logger.info("%s %s → %d: %s", route, label, status, exc.message)
            await send_error(send, exc, reply_headers)
        finally:
            if client is not None:
                client.close()
            request_id.reset(token)
            metrics.REQUESTS.labels(label, route, str(status)).inc()
            metrics.LATENCY.labels(label, route).observe(time.perf_counter() - started)

    async def _forward(
        self,
        model: str,
        request: InferenceRequest,
        headers: dict[str, str],
        client: ClientWatch,
        send: Send,
        route: str,
        reply_headers: list[tuple[str, str]],
        started: float,
    ) -> int:
        candidates = self._table.snapshot(model)
        if not candidates:
            metrics.ROUTING.labels(
                model if self._table.is_known(model) else "unknown", "none"
            ).inc()
            raise self._no_replica(model)
        last_error: MeshError | None = None
        # a session key only matters when there is a replica to choose
        session = session_key(route, request.payload, headers) if len(candidates) > 1 else ""
        ranked = self._router.rank(RouteRequest(model, session), candidates)
        for endpoint in ranked[: self._settings.max_attempts]:
            opened = await self._open(
                endpoint, request.body, headers, client, route, reply_headers[0][1]
            )
            if isinstance(opened, MeshError):
                last_error = opened
                continue
            if last_error is not None:
                metrics.FAILOVERS.labels(model).inc()
            local = endpoint.node == self._node and not self._settings.force_relay
            metrics.ROUTING.labels(model, "this_node" if local else "other_node").inc()
            metrics.TTFT.labels(model, route).observe(time.perf_counter() - started)
            return await self._stream(
                model, request, endpoint, opened, client, send, route, reply_headers
            )
        assert last_error is not None
        if isinstance(last_error, Unavailable):
            raise last_error
        raise UpstreamError(f"every replica of '{model}' failed: {last_error.message}")

    async def _open(
        self,
        endpoint: pb.Endpoint,
        body: bytes,
        headers: dict[str, str],
        client: ClientWatch,
        route: str,
        rid: str,
    ) -> OpenedUpstream | MeshError:
        """The replica's successful answer, or the failure to try the next replica after.
        Raises what ends the request: the client leaving, a timeout (the replica may still be
        working on it), a rejection of the input."""
        url, session = self.target(endpoint, route)
        self._router.started(endpoint)
        try:
            opened = await client.guard(
                open_upstream(
                    session,
                    url,
                    body,
                    forward_headers(headers, {"x-request-id": rid}),
                    connect_timeout_s=self._settings.connect_timeout_s,
                    first_byte_timeout_s=self._settings.first_byte_timeout_s,
                )
            )
        except UpstreamTimeout:
            self._router.finished(endpoint, failed=True)
            raise
        except UpstreamError as exc:
            return self._failed(endpoint, exc)
        except BaseException:
            self._router.finished(endpoint)
            raise
        verdict = judge(opened.status, RELAY_ERROR_HEADER in opened.response.headers)
        if verdict is Verdict.RELAY:
            return opened
        answer = await read_error_body(opened)
        if verdict is Verdict.REJECT:
            self._router.finished(endpoint)
            raise rejection(opened.status, answer)
        detail = excerpt(answer.decode(errors="replace"), 300)
        if opened.status == 503:
            return self._failed(endpoint, Unavailable(f"replica is loading or busy: {detail}"))
        return self._failed(endpoint, UpstreamError(f"{url} answered {opened.status}: {detail}"))

    def _failed(self, endpoint: pb.Endpoint, error: MeshError) -> MeshError:
        self._router.finished(endpoint, failed=True)
        metrics.RETRIES.labels(endpoint.model).inc()
        logger.warning(
            "replica %s on %s failed before its first byte: %s",
            endpoint.instance_id,
            endpoint.node,
            error.message,
        )
        return error

    async def _stream(
        self,
        model: str,
        request: InferenceRequest,
        endpoint: pb.Endpoint,
        opened: OpenedUpstream,
        client: ClientWatch,
        send: Send,
        route: str,
        reply_headers: list[tuple[str, str]],
    ) -> int:
        counter = TokenCounter(request.stream, metrics.INTER_TOKEN.labels(model).observe)
        try:
            complete = await relay_response(
                opened,
                client,
                send,
                extra_headers=[*reply_headers, ("x-mesh-node", endpoint.node)],
                on_chunk=counter,
                idle_timeout_s=self._settings.stream_idle_timeout_s,
            )
        finally:
            self._router.finished(endpoint)
        prompt, completion = counter.usage()
        metrics.TOKENS.labels(model, "in").inc(prompt)
        metrics.TOKENS.labels(model, "out").inc(completion)
        if not complete:
            metrics.ERRORS.labels(model, route, "interrupted").inc()
            return 499
        return opened.status

    def _no_replica(self, model: str) -> MeshError:
        if not self._table.ready:
            return Unavailable(
                "this gateway has not loaded the mesh's models yet (is etcd reachable?); "
                "retry shortly",
                error_code="store_unavailable",
            )
        if self._table.is_known(model):
            return Unavailable(
                f"model '{excerpt(model)}' has no ready replica right now (loading or no "
                f"capacity); retry shortly",
                error_code="model_not_ready",
            )
        served = sorted(self._table.served_models())
        available = ", ".join(served) if served else "none yet"
        return NotFound(
            f"model '{excerpt(model)}' does not exist in this mesh; available: {available}",
            param="model",
            error_code="model_not_found",
        )
