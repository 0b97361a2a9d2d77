"""The worker relay, the one door to a node's llama-servers from other nodes: it requires the
mesh secret and streams to the loopback llama-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from helpers import LlamaServer, eventually

from meshllm.cli.etcd import free_port
from meshllm.core.lifecycle import EmbeddedUvicorn
from meshllm.core.probes import create_probe_app
from meshllm.core.streaming import upstream_session
from meshllm.worker.relay import RelayApp

pytestmark = pytest.mark.integration
SECRET = "s3cret-token"


@pytest.fixture
async def relay(llama: LlamaServer) -> AsyncIterator[str]:
    session = upstream_session()
    app = RelayApp(
        SECRET, {"inst-1": llama.port}.get, lambda: session, create_probe_app(lambda: None)
    )
    port = free_port()
    server = EmbeddedUvicorn(app, "127.0.0.1", port)
    task = asyncio.create_task(server.run())
    await eventually(lambda: server.started)
    yield f"http://127.0.0.1:{port}"
    await server.stop()
    await task
    await session.close()


BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def test_relay_requires_the_secret(relay: str) -> None:
    async with httpx.AsyncClient(base_url=relay) as client:
        url = "/relay/inst-1/v1/chat/completions"
        missing = await client.post(url, json=BODY)
        wrong = await client.post(url, json=BODY, headers={"authorization": "Bearer nope"})
        assert missing.status_code == wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        ok = await client.post(url, json=BODY, headers={"authorization": f"Bearer {SECRET}"})
        assert ok.status_code == 200 and ok.json()["choices"]


async def test_relay_streams_and_refuses_what_it_does_not_forward(relay: str) -> None:
    auth = {"authorization": f"Bearer {SECRET}"}
    async with httpx.AsyncClient(base_url=relay) as client:
        async with client.stream(
            "POST", "/relay/inst-1/v1/chat/completions", json={**BODY, "stream": True}, headers=auth
        ) as reply:
            lines = [line async for line in reply.aiter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        unknown = await client.post("/relay/other/v1/chat/completions", json=BODY, headers=auth)
        assert unknown.status_code == 404
        escape = await client.post("/relay/inst-1/slots", json={}, headers=auth)
        assert escape.status_code == 400
        assert (await client.get("/health")).json() == {"status": "ok"}


async def test_relay_without_a_secret_is_closed(llama: LlamaServer) -> None:
    session = upstream_session()
    app = RelayApp("", {"inst-1": llama.port}.get, lambda: session, create_probe_app(lambda: None))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://w"
    ) as client:
        reply = await client.post(
            "/relay/inst-1/v1/chat/completions", json=BODY, headers={"authorization": "Bearer "}
        )
    await session.close()
    assert reply.status_code == 503
