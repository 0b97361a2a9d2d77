"""Forwarding an inference request: validate what routing needs, rank the replicas, open the
upstream (retrying another replica until the first byte), then stream it through."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from meshllm.core.errors import InvalidRequest, MeshError, NotFound, Unavailable, UpstreamError
from meshllm.core.logging import request_id
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.streaming import (
    ClientGone,
    OpenedUpstream,
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

from . import metrics
from .endpoints import EndpointTable
from .routing import Router
from .settings import ProxySettings

logger = logging.getLogger(__name__)

# route → the field that must be present besides `model`
ROUTES = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    stream: bool


def parse_request(body: bytes, route: str) -> InferenceRequest:
    """Only what routing needs; llama-server validates the rest."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: a model name from GET /v1/models", param="model")
    required = ROUTES[route]
    value = payload.get(required)
    if value is None or (required == "messages" and (not isinstance(value, list) or not value)):
        kind = "must be a non-empty list" if required == "messages" else "is required"
        raise InvalidRequest(f"'{required}' {kind} for {route}", param=required)
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", param="stream")
    return InferenceRequest(model, stream)


class TokenCounter:
    """Counts generated tokens without decoding the stream: llama-server sends one SSE event
    per token, carrying a non-empty `content` (chat) or `text` (completions); for a plain JSON
    answer, its `usage` block."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.events = 0
        self._body: list[bytes] = []
        self._size = 0

    def __call__(self, chunk: bytes) -> None:
        if self.stream:
            for field in (b'"content":"', b'"text":"'):
                self.events += chunk.count(field) - chunk.count(field + b'"')
        elif self._size < 1 << 20:
            self._body.append(chunk)
            self._size += len(chunk)

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
        secret: str,
        table: EndpointTable,
        router: Router,
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._settings = settings
        self._node = node
        self._secret = secret
        self._table = table
        self._router = router
        self._session = session

    def target(self, endpoint: pb.Endpoint, route: str) -> tuple[str, dict[str, str]]:
        if endpoint.node == self._node and not self._settings.force_relay:
            return endpoint.local_url + route, {}
        url = f"{endpoint.relay_url}/relay/{endpoint.instance_id}{route}"
        return url, {"authorization": f"Bearer {self._secret}"}

    async def handle(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        started = time.perf_counter()
        headers = request_headers(scope)
        rid = headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id.set(rid)
        reply_headers = [("x-request-id", rid)]
        label = "unknown"
        status = 500
        try:
            body = await read_body(receive)
            request = parse_request(body, route)
            label = request.model if self._table.is_known(request.model) else "unknown"
            status = await self._forward(
                request, body, headers, receive, send, route, reply_headers, started
            )
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
            request_id.reset(token)
            metrics.REQUESTS.labels(label, route, str(status)).inc()
            metrics.LATENCY.labels(label, route).observe(time.perf_counter() - started)

    async def _forward(
        self,
        request: InferenceRequest,
        body: bytes,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
        route: str,
        reply_headers: list[tuple[str, str]],
        started: float,
    ) -> int:
        candidates = self._table.snapshot(request.model)
        if not candidates:
            raise self._no_replica(request.model)
        last_error: MeshError | None = None
        for endpoint in self._router.rank(candidates)[: self._settings.max_attempts]:
            url, extra = self.target(endpoint, route)
            self._router.started(endpoint)
            try:
                opened = await open_upstream(
                    self._session(),
                    url,
                    body,
                    forward_headers(headers, {**extra, "x-request-id": reply_headers[0][1]}),
                    connect_timeout_s=self._settings.connect_timeout_s,
                    first_byte_timeout_s=self._settings.first_byte_timeout_s,
                )
            except MeshError as exc:
                self._router.finished(endpoint, failed=True)
                metrics.RETRIES.labels(request.model).inc()
                logger.warning(
                    "replica %s on %s failed before its first byte: %s",
                    endpoint.instance_id,
                    endpoint.node,
                    exc.message,
                )
                last_error = exc
                continue
            metrics.TTFT.labels(request.model, route).observe(time.perf_counter() - started)
            return await self._stream(
                request, endpoint, opened, receive, send, route, reply_headers
            )
        assert last_error is not None
        raise UpstreamError(f"every replica of '{request.model}' failed: {last_error.message}")

    async def _stream(
        self,
        request: InferenceRequest,
        endpoint: pb.Endpoint,
        opened: OpenedUpstream,
        receive: Receive,
        send: Send,
        route: str,
        reply_headers: list[tuple[str, str]],
    ) -> int:
        counter = TokenCounter(request.stream)
        gauge = metrics.IN_FLIGHT.labels(request.model)
        gauge.inc()
        try:
            complete = await relay_response(
                opened,
                receive,
                send,
                extra_headers=[*reply_headers, ("x-mesh-node", endpoint.node)],
                on_chunk=counter,
            )
        finally:
            gauge.dec()
            self._router.finished(endpoint)
        prompt, completion = counter.usage()
        metrics.TOKENS.labels(request.model, "prompt").inc(prompt)
        metrics.TOKENS.labels(request.model, "completion").inc(completion)
        if not complete:
            metrics.ERRORS.labels(request.model, route, "interrupted").inc()
            return 499
        return opened.response.status

    def _no_replica(self, model: str) -> MeshError:
        if self._table.is_known(model):
            return Unavailable(
                f"model '{model}' has no ready replica right now (loading or no capacity); "
                f"retry shortly",
                error_code="model_not_ready",
            )
        served = sorted(self._table.served_models())
        available = ", ".join(served) if served else "none yet"
        return NotFound(
            f"model '{model}' does not exist in this mesh; available: {available}",
            param="model",
            error_code="model_not_found",
        )
