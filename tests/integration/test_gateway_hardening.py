"""The gateway against clients that misbehave and upstreams that do not answer, through a real
uvicorn (the protocol limits live there) in front of a real llama-server and etcd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
from helpers import LlamaServer, eventually, publish_endpoint

from meshllm.core import keys
from meshllm.core.lifecycle import EmbeddedUvicorn
from meshllm.core.ports import free_port
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.core.streaming import RELAY_ERROR_HEADER, upstream_session
from meshllm.gateway import metrics
from meshllm.gateway.app import GatewayApp, create_api
from meshllm.gateway.endpoints import EndpointTable
from meshllm.gateway.guard import ApiGuard, ApiPolicy
from meshllm.gateway.proxy import Proxy
from meshllm.gateway.routing import Router, RouteRequest, RoutingSettings
from meshllm.gateway.settings import ProxySettings

pytestmark = pytest.mark.integration
NODE = "node-a"
HEADER_TIMEOUT_S = 1.0
SETTINGS = ProxySettings(
    first_byte_timeout_s=2.0, body_timeout_s=1.0, max_body_bytes=1 << 20, retry_after_s=3
)


@dataclass
class Served:
    url: str
    port: int
    table: EndpointTable
    router: Router
    store: EtcdStore
    mesh: str

    async def add_endpoint(self, instance: str, url: str, model: str = "tiny") -> None:
        await publish_endpoint(self.store, self.mesh, model, instance, url, NODE, f"w-{instance}")
        await eventually(lambda: any(e.instance_id == instance for e in self.table.snapshot(model)))

    async def remove_endpoint(self, instance: str, model: str = "tiny") -> None:
        await self.store.delete(keys.endpoint(self.mesh, model, instance))
        await eventually(lambda: all(e.instance_id != instance for e in self.table.snapshot(model)))


@contextlib.asynccontextmanager
async def start_served(
    store: EtcdStore, mesh_id: str, llama: LlamaServer, policy: ApiPolicy
) -> AsyncIterator[Served]:
    """The gateway as its service runs it: the proxy and API behind the API guard, in a real
    uvicorn, routing to a real llama-server."""
    table = EndpointTable(store, mesh_id)
    tasks = [asyncio.create_task(c.run()) for c in table.caches]
    session = upstream_session()
    router = Router(RoutingSettings(cooldown_s=30))
    app = GatewayApp(
        Proxy(SETTINGS, NODE, table, router, lambda: session, lambda: session), create_api(table)
    )
    port = free_port()
    server = EmbeddedUvicorn(
        ApiGuard(app, policy), "127.0.0.1", port, header_timeout_s=HEADER_TIMEOUT_S
    )
    tasks.append(asyncio.create_task(server.run()))
    await store.put(
        keys.catalog_entry(mesh_id, "tiny"), pb.CatalogEntry(name="tiny", aliases=["tiny-alias"])
    )
    # each prefix is its own watch: wait for the catalog entry itself, not just a first load
    await eventually(lambda: server.started and table.resolve("tiny-alias") == "tiny")
    gw = Served(f"http://127.0.0.1:{port}", port, table, router, store, mesh_id)
    await gw.add_endpoint("real", llama.url)
    try:
        yield gw
    finally:
        await server.stop()
        for cache in table.caches:
            await cache.stop()
        await asyncio.gather(*tasks)
        await session.close()


@pytest.fixture
async def served(store: EtcdStore, mesh_id: str, llama: LlamaServer) -> AsyncIterator[Served]:
    async with start_served(store, mesh_id, llama, ApiPolicy.create()) as gw:
        yield gw


KEY = "sk-mesh-test"
ALLOWED_ORIGIN = "https://app.example.com"


@pytest.fixture
async def keyed(store: EtcdStore, mesh_id: str, llama: LlamaServer) -> AsyncIterator[Served]:
    policy = ApiPolicy.create([KEY, "sk-other"], [ALLOWED_ORIGIN])
    async with start_served(store, mesh_id, llama, policy) as gw:
        yield gw


def chat(model: str = "tiny", **extra: object) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        **extra,
    }


def assert_openai_error(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert isinstance(error["code"], str) and isinstance(error["type"], str)
    return error


async def still_serving(gw: Served) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def raw_exchange(port: int, data: bytes, *, read_timeout: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(read_timeout):
            return await reader.read()
    finally:
        writer.close()


def json_error_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    return status, json.loads(body)["error"]


# --- client errors are the client's, not the replica's ------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        # llama-server answers these with a 500; they are the input's fault
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "messages": [{"role": "user", "content": '
            b'"\\ud800"}], "max_tokens": 2}',
        ),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": [{"role": "nobody"}]}'),
        ("/v1/completions", b'{"model": "tiny", "prompt": "x", "n_probs": "lots"}'),
        # the gateway's own strict parsing
        ("/v1/chat/completions", b'{"model": "tiny", "messages": [{}], "temperature": NaN}'),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": [{}], "temperature": 1e999}'),
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        ),
    ],
)
async def test_client_errors_are_4xx_in_openai_shape_and_blame_no_replica(
    served: Served, route: str, body: bytes
) -> None:
    retries = metrics.RETRIES.labels("tiny")._value.get()
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        reply = await client.post(route, content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(reply, 400)
    assert error["type"] == "invalid_request_error"
    assert metrics.RETRIES.labels("tiny")._value.get() == retries  # no replica was blamed
    assert [
        e.instance_id
        for e in served.router.rank(RouteRequest("tiny"), served.table.snapshot("tiny"))
    ] == ["real"]
    assert served.router.stats.failures == {}
    await still_serving(served)


async def test_a_thousand_headers_get_431_and_nothing_reaches_upstream(served: Served) -> None:
    junk = b"".join(b"x-junk-%d: %d\r\n" % (i, i) for i in range(1000))
    body = json.dumps(chat()).encode()
    raw = await raw_exchange(
        served.port,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + junk
        + b"content-length: %d\r\n\r\n" % len(body)
        + body,
    )
    status, error = json_error_of(raw)
    assert status == 431 and error["code"] == "headers_too_large"
    await still_serving(served)


@contextlib.asynccontextmanager
async def fixed_upstream(
    status: str, body: bytes, headers: bytes = b""
) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server that gives every request the same answer; yields its URL and the
    headers of each request it got."""
    seen: list[dict[str, str]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = (line.partition(": ") for line in head.split("\r\n")[1:] if line)
        seen.append({name.lower(): value for name, _, value in lines})
        writer.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
            % (status.encode(), headers, len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


async def test_client_headers_other_than_the_few_llama_server_reads_stay_at_the_door(
    served: Served,
) -> None:
    async with fixed_upstream("200 OK", b'{"choices": []}') as (url, seen):
        await served.store.put(
            keys.catalog_entry(served.mesh, "echo"), pb.CatalogEntry(name="echo")
        )
        await served.add_endpoint("echo", url, model="echo")
        async with httpx.AsyncClient(base_url=served.url) as client:
            reply = await client.post(
                "/v1/chat/completions",
                json=chat("echo"),
                headers={"cookie": "a=1", "authorization": "Bearer key", "x-session-id": "s1"},
            )
    assert reply.status_code == 200
    assert "cookie" not in seen[0] and "authorization" not in seen[0]
    assert seen[0]["x-session-id"] == "s1" and seen[0]["x-request-id"]


async def test_relay_errors_are_retried_elsewhere(served: Served) -> None:
    """A relay that answers for itself (here: a wrong secret) is a failed replica."""
    error = b'{"error": {"message": "wrong secret", "type": "x", "code": "c", "param": null}}'
    tag = RELAY_ERROR_HEADER.encode() + b": unauthorized\r\n"
    async with fixed_upstream("401 Unauthorized", error, tag) as (url, _):
        await served.add_endpoint("bad-relay", url)
        real = next(e for e in served.table.snapshot("tiny") if e.instance_id == "real")
        served.router.started(real)  # busier, so the bad relay is tried first
        try:
            async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
                reply = await client.post("/v1/chat/completions", json=chat())
        finally:
            served.router.finished(real)
            await served.remove_endpoint("bad-relay")
    assert reply.status_code == 200
    assert "bad-relay" in served.router.stats.failures


# --- routes, names and spec-valid requests --------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", chat(stream=None)),
        ("/v1/chat/completions", chat("tiny-alias")),
        ("/v1/completions", {"model": "tiny", "max_tokens": 4}),
        ("/v1/completions", {"model": "tiny", "prompt": None, "max_tokens": 4}),
        ("/v1/responses", {"model": "tiny", "input": "hi", "max_output_tokens": 4}),
        (
            "/v1/messages",
            {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        ),
    ],
)
async def test_spec_valid_requests_and_every_route_are_served(
    served: Served, route: str, body: dict
) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        reply = await client.post(route, json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-mesh-node"] == NODE


async def test_an_alias_resolves_everywhere_a_name_is_taken(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/v1/models/tiny-alias")).json()["id"] == "tiny"
        error = assert_openai_error(
            await client.post("/v1/chat/completions", json=chat("tiny-aliasx")), 404
        )
        assert error["code"] == "model_not_found"


async def test_a_huge_model_name_gets_a_short_404_and_a_short_log_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    name = "m\nFORGED " + "x" * 1_000_000
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        error = assert_openai_error(await client.post("/v1/chat/completions", json=chat(name)), 404)
    assert len(error["message"]) < 400 and "\n" not in error["message"]
    assert all(len(r.getMessage()) < 2000 for r in caplog.records)
    await still_serving(served)


# --- bodies and headers that are too big or too slow -----------------------------------------


async def test_an_oversized_body_is_413_before_it_is_read(served: Served) -> None:
    raw = await raw_exchange(
        served.port,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b'content-length: 73400320\r\n\r\n{"model": ',
    )
    status, error = json_error_of(raw)
    assert status == 413 and error["code"] == "request_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    async with httpx.AsyncClient(base_url=served.url) as client:  # chunked, no length given
        reply = await client.post(
            "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}
        )
    assert_openai_error(reply, 413)
    await still_serving(served)


async def test_headers_sent_byte_by_byte_are_cut_off(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    closed = asyncio.create_task(reader.read())  # b"" once the gateway hangs up
    started = time.monotonic()
    for byte in b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-slow: " + b"a" * 200:
        if closed.done():
            break
        with contextlib.suppress(ConnectionError):
            writer.write(bytes([byte]))
            await writer.drain()
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(closed, timeout=1) == b""
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5
    writer.close()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", served.port)
    async with asyncio.timeout(HEADER_TIMEOUT_S + 3):  # a connection that sends nothing
        assert await idle_reader.read() == b""
    idle_writer.close()
    await still_serving(served)


async def test_a_body_that_never_ends_gets_408(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n{"
    )
    await writer.drain()
    started = time.monotonic()
    async with asyncio.timeout(SETTINGS.body_timeout_s + 5):
        raw = await reader.read(65536)
    writer.close()
    status, error = json_error_of(raw)
    assert status == 408 and error["code"] == "request_timeout"
    assert time.monotonic() - started < SETTINGS.body_timeout_s + 2
    await still_serving(served)


# --- waiting on the upstream ------------------------------------------------------------------


@pytest.fixture
async def silent_upstream(served: Served) -> AsyncIterator[list[asyncio.Event]]:
    """A replica that accepts connections and never answers; each connection's event is set
    when the gateway closes it."""
    closed: list[asyncio.Event] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        event = asyncio.Event()
        closed.append(event)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        event.set()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await served.store.put(
        keys.catalog_entry(served.mesh, "silent"), pb.CatalogEntry(name="silent")
    )
    await served.add_endpoint("silent-1", f"http://127.0.0.1:{port}", model="silent")
    yield closed
    server.close()


async def test_an_upstream_that_never_answers_times_out_and_counts_as_in_flight(
    served: Served, silent_upstream: list[asyncio.Event]
) -> None:
    gauge = metrics.IN_FLIGHT.labels("silent")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        request = asyncio.create_task(client.post("/v1/chat/completions", json=chat("silent")))
        await eventually(lambda: gauge._value.get() == 1)  # in flight while nothing answers
        started = time.monotonic()
        reply = await request
    error = assert_openai_error(reply, 504)
    assert error["code"] == "upstream_timeout"
    assert time.monotonic() - started < SETTINGS.first_byte_timeout_s + 1
    assert gauge._value.get() == 0
    await eventually(lambda: all(e.is_set() for e in silent_upstream))  # the upstream is let go


async def test_a_client_that_leaves_before_the_upstream_answers_lets_it_go(
    served: Served, silent_upstream: list[asyncio.Event]
) -> None:
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(
            http.post(f"{served.url}/v1/chat/completions", json=chat("silent"))
        )
        await eventually(lambda: len(silent_upstream) == 1)
        request.cancel()  # the client hangs up
        with contextlib.suppress(asyncio.CancelledError):
            await request
    await eventually(lambda: silent_upstream[0].is_set(), timeout=1.0)
    assert metrics.IN_FLIGHT.labels("silent")._value.get() == 0


@pytest.fixture
async def slow_llama(llama_server_bin: str, chat_model: Path) -> AsyncIterator[LlamaServer]:
    """SmolLM2 on one thread: ~100 tokens/s, so a long answer takes the better part of a
    minute (the tiny model would finish its whole context in under two seconds)."""
    server = LlamaServer(llama_server_bin, chat_model, context=4096, parallel=1, threads=1)
    await server.start()
    yield server
    await server.process.stop(5)


async def test_a_client_that_leaves_a_non_streamed_request_frees_the_slot(
    served: Served, slow_llama: LlamaServer
) -> None:
    await served.add_endpoint("slow", slow_llama.url)
    await served.remove_endpoint("real")
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(
            http.post(
                f"{served.url}/v1/completions",
                json={"model": "tiny", "prompt": "once", "max_tokens": 4000, "ignore_eos": True},
            )
        )
        for _ in range(200):
            if await slow_llama.busy_slots() == 1:
                break
            await asyncio.sleep(0.02)
        assert await slow_llama.busy_slots() == 1
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
    # llama-server looks for a closed connection after a second without results for that
    # request; any /slots or /metrics call in between starts that second again, so it is
    # asked once: running to max_tokens would take over 5 s here
    await asyncio.sleep(2.0)
    assert await slow_llama.busy_slots() == 0, "the slot kept generating after the client left"


async def test_api_keys_let_in_the_official_clients_and_no_one_else(
    keyed: Served, llama: LlamaServer
) -> None:
    import anthropic
    import openai

    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}):
            reply = await client.post("/v1/chat/completions", json=chat(), headers=headers)
            assert assert_openai_error(reply, 401)["code"] == "invalid_api_key"
            assert reply.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/readyz")).status_code == 200  # probes stay open
    gpt = openai.AsyncOpenAI(base_url=f"{keyed.url}/v1", api_key=KEY, max_retries=0)
    assert (await gpt.chat.completions.create(**chat())).choices  # type: ignore[call-overload]
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{keyed.url}/v1", api_key="sk-nope", max_retries=0
        ).models.list()
    claude = anthropic.AsyncAnthropic(base_url=keyed.url, api_key="sk-other", max_retries=0)
    message = await claude.messages.create(
        model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.role == "assistant"


async def test_other_origins_are_refused_and_llama_servers_cors_never_passes(
    served: Served, keyed: Served, llama: LlamaServer
) -> None:
    evil = {"origin": "https://evil.example"}
    async with httpx.AsyncClient(timeout=30) as client:
        direct = await client.options(
            f"{llama.url}/v1/chat/completions",
            headers={**evil, "access-control-request-method": "POST"},
        )
        assert "access-control-allow-origin" in direct.headers  # llama-server allows anyone
        # a "simple" cross-site POST (no preflight) must not make the mesh generate
        simple = await client.post(
            f"{served.url}/v1/chat/completions",
            content=json.dumps(chat()),
            headers={**evil, "content-type": "text/plain"},
        )
        assert assert_openai_error(simple, 403)["code"] == "forbidden"
        preflight = await client.options(
            f"{served.url}/v1/chat/completions",
            headers={**evil, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
        plain = await client.post(f"{served.url}/v1/chat/completions", json=chat())
        assert plain.status_code == 200
        assert not [h for h in plain.headers if h.startswith("access-control-")]
        allowed = {"origin": ALLOWED_ORIGIN}
        preflight = await client.options(
            f"{keyed.url}/v1/chat/completions",
            headers={**allowed, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        answered = await client.post(
            f"{keyed.url}/v1/chat/completions",
            json=chat(),
            headers={**allowed, "authorization": f"Bearer {KEY}"},
        )
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        own = {"origin": served.url}  # the gateway's own page
        assert (await client.get(f"{served.url}/v1/models", headers=own)).status_code == 200
