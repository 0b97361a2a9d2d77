"""The gateway's HTTP surface and proxy against a real etcd and a real llama-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import pytest
from helpers import LlamaServer, eventually, publish_endpoint

from meshllm.core import keys
from meshllm.core.lifecycle import EmbeddedUvicorn
from meshllm.core.ports import free_port
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.core.streaming import upstream_session
from meshllm.gateway import metrics
from meshllm.gateway.app import GatewayApp, create_api
from meshllm.gateway.endpoints import EndpointTable
from meshllm.gateway.proxy import Proxy
from meshllm.gateway.routing import Router, RouteRequest, RoutingSettings
from meshllm.gateway.routing.scorers import rendezvous_weight
from meshllm.gateway.settings import ProxySettings

pytestmark = pytest.mark.integration
NODE = "node-a"


@dataclass
class Gateway:
    app: GatewayApp
    client: httpx.AsyncClient
    table: EndpointTable
    router: Router
    store: EtcdStore
    mesh: str

    async def add_endpoint(
        self, instance: str, url: str, model: str = "tiny", node: str = NODE
    ) -> None:
        await publish_endpoint(self.store, self.mesh, model, instance, url, node, f"w-{instance}")
        await eventually(lambda: any(e.instance_id == instance for e in self.table.snapshot(model)))


@pytest.fixture
async def gateway(store: EtcdStore, mesh_id: str, llama: LlamaServer) -> AsyncIterator[Gateway]:
    table = EndpointTable(store, mesh_id)
    tasks = [asyncio.create_task(c.run()) for c in table.caches]
    session = upstream_session()
    router = Router(RoutingSettings(cooldown_s=30))
    proxy = Proxy(
        ProxySettings(retry_after_s=7), NODE, table, router, lambda: session, lambda: session
    )
    app = GatewayApp(proxy, create_api(table))
    await store.put(keys.catalog_entry(mesh_id, "tiny"), pb.CatalogEntry(name="tiny"))
    await store.put(
        keys.demand_entry(mesh_id, "loading-model", NODE),
        pb.Demand(model="loading-model", pinned=True),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        gw = Gateway(app, client, table, router, store, mesh_id)
        await eventually(
            lambda: table.is_known("loading-model") and table.entry("tiny") is not None
        )
        await gw.add_endpoint("real", llama.url)
        yield gw
    for cache in table.caches:
        await cache.stop()
    await asyncio.gather(*tasks)
    await session.close()


def chat(model: str = "tiny", **extra: object) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "temperature": 0,
        **extra,
    }


def assert_openai_error(reply: httpx.Response, status: int, param: str | None = None) -> dict:
    assert reply.status_code == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


async def test_models_lists_ready_replicas(gateway: Gateway) -> None:
    models = (await gateway.client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert models["data"][0]["meshllm"]["replicas"][0]["node"] == NODE
    assert (await gateway.client.get("/v1/models/tiny")).json()["id"] == "tiny"
    assert_openai_error(await gateway.client.get("/v1/models/nope"), 404)


async def test_chat_passes_through_with_request_id(gateway: Gateway) -> None:
    reply = await gateway.client.post(
        "/v1/chat/completions", json=chat(), headers={"x-request-id": "abc123"}
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "abc123" and reply.headers["x-mesh-node"] == NODE
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"


async def test_unknown_model_is_404_naming_the_available_ones(gateway: Gateway) -> None:
    error = assert_openai_error(
        await gateway.client.post("/v1/chat/completions", json=chat("gpt-9")), 404, "model"
    )
    assert "gpt-9" in error["message"] and "available: tiny" in error["message"]
    assert error["code"] == "model_not_found"


async def test_known_model_without_replica_is_503_with_retry_after(gateway: Gateway) -> None:
    reply = await gateway.client.post("/v1/chat/completions", json=chat("loading-model"))
    assert_openai_error(reply, 503)
    assert reply.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        ("/v1/chat/completions", b'{"model": "tiny"}', "messages"),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": []}', "messages"),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": [{}], "stream": "yes"}', "stream"),
        ("/v1/messages", b'{"model": "tiny"}', "messages"),
        ("/v1/embeddings", b'{"model": "tiny"}', "input"),
        ("/v1/embeddings", b"\xff\xfe", None),
    ],
)
async def test_bad_requests_are_400_and_the_gateway_keeps_serving(
    gateway: Gateway, route: str, body: bytes, param: str | None
) -> None:
    reply = await gateway.client.post(
        route, content=body, headers={"content-type": "application/json"}
    )
    assert_openai_error(reply, 400, param)
    assert (await gateway.client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_unknown_route_and_method_are_openai_errors(gateway: Gateway) -> None:
    assert_openai_error(await gateway.client.get("/v1/nothing"), 404)
    assert_openai_error(await gateway.client.get("/v1/chat/completions"), 405)


async def test_failover_before_the_first_byte(gateway: Gateway) -> None:
    dead_port = free_port()  # nothing listens there
    await gateway.add_endpoint("dead", f"http://127.0.0.1:{dead_port}")
    replicas = gateway.table.snapshot("tiny")
    real = next(e for e in replicas if e.instance_id == "real")
    gateway.router.started(real)  # busier, and the session's own: the dead one is ranked first
    session = next(
        f"s{i}" for i in range(1000)
        if max(replicas, key=lambda e: rendezvous_weight(f"id:s{i}", e.instance_id)) is not real
    )  # fmt: skip
    retries = metrics.RETRIES.labels("tiny")._value.get()
    try:
        reply = await gateway.client.post(
            "/v1/chat/completions", json=chat(), headers={"x-session-id": session}
        )
    finally:
        gateway.router.finished(real)
    assert reply.status_code == 200
    assert metrics.RETRIES.labels("tiny")._value.get() == retries + 1
    ranked = gateway.router.rank(RouteRequest("tiny"), gateway.table.snapshot("tiny"))
    assert ranked[-1].instance_id == "dead"  # suspect now: tried last


async def test_every_replica_down_is_502(gateway: Gateway) -> None:
    await gateway.add_endpoint("only-dead", f"http://127.0.0.1:{free_port()}", model="ghost")
    error = assert_openai_error(
        await gateway.client.post("/v1/chat/completions", json=chat("ghost")), 502
    )
    assert "every replica of 'ghost' failed" in error["message"]


async def test_upstream_4xx_is_passed_back_in_openai_shape(gateway: Gateway) -> None:
    """llama-server's own error JSON (an integer `code`, no `param`) is rewritten."""
    reply = await gateway.client.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "nobody", "content": 1}])
    )
    error = assert_openai_error(reply, 400)
    assert isinstance(error["code"], str) and error["type"] == "invalid_request_error"


async def test_streaming_and_metrics(gateway: Gateway) -> None:
    async with gateway.client.stream(
        "POST", "/v1/chat/completions", json=chat(stream=True, max_tokens=8)
    ) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [line async for line in reply.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"
    text = (await gateway.client.get("/metrics")).text
    assert 'meshllm_requests_total{model="tiny",route="/v1/chat/completions",status="200"}' in text
    assert "meshllm_time_to_first_token_seconds_bucket" in text
    assert 'meshllm_tokens_total{direction="out",model="tiny"}' in text


async def test_client_disconnect_frees_the_slot(gateway: Gateway, llama: LlamaServer) -> None:
    """Through a real uvicorn: drop the connection mid-stream and the llama-server slot must
    stop generating instead of running on to max_tokens."""
    port = free_port()
    server = EmbeddedUvicorn(gateway.app, "127.0.0.1", port)
    task = asyncio.create_task(server.run())
    await eventually(lambda: server.started)
    max_tokens = 4000
    try:
        before = await llama.tokens_predicted()
        async with aiohttp.ClientSession() as http:
            reply = await http.post(
                f"http://127.0.0.1:{port}/v1/completions",
                json={
                    "model": "tiny",
                    "prompt": "once upon a time",
                    "max_tokens": max_tokens,
                    "stream": True,
                    "temperature": 0,
                    "ignore_eos": True,
                },
            )
            await reply.content.readany()
            assert await llama.busy_slots() == 1
            reply.close()
        for _ in range(3000):  # up to a minute: how soon is not the question, how much is
            if not await llama.busy_slots():
                break
            await asyncio.sleep(0.02)
        assert await llama.busy_slots() == 0, "the slot kept generating after the disconnect"
        generated = await llama.tokens_predicted() - before
        # counted by llama-server, not timed: a slot that ran on would show all of them
        assert generated < max_tokens, f"all {max_tokens} tokens were generated"
    finally:
        await server.stop()
        await task
