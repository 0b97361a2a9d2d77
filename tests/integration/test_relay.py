"""The worker relay, the one door to a node's llama-servers from other nodes: mutual TLS with
the mesh's certificates, any unrevoked member may stream through it, nobody else gets in."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import LlamaServer, eventually, issue_credentials

from meshllm.core import pki
from meshllm.core.lifecycle import EmbeddedUvicorn
from meshllm.core.ports import free_port
from meshllm.core.streaming import RELAY_ERROR_HEADER, relay_session, upstream_session
from meshllm.worker.relay import RelayApp

pytestmark = pytest.mark.integration
MESH = "m-relay"
BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
URL = "/relay/inst-1/v1/chat/completions"


@dataclass
class Relay:
    url: str
    ca: tuple
    revoked: set[int]
    home: Path
    client_ports: list[int]  # the client's port of every request: one port, one connection

    def client(self, node: str, role: str = pki.NODE, ca: tuple | None = None) -> httpx.AsyncClient:
        credentials = issue_credentials(self.home / node, ca or self.ca, node, role)
        return httpx.AsyncClient(
            base_url=self.url, verify=credentials.client_context(check_name=False)
        )


@pytest.fixture
async def relay(llama: LlamaServer, tmp_path: Path) -> AsyncIterator[Relay]:
    ca = pki.create_ca(MESH)
    session = upstream_session()
    revoked: set[int] = set()
    app = RelayApp(
        {"inst-1": llama.port}.get, lambda: session, mesh_id=MESH, revoked=revoked, tls=True
    )
    client_ports: list[int] = []

    async def recording(scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http":
            client_ports.append(scope["client"][1])
        await app(scope, receive, send)  # type: ignore[arg-type]

    port = free_port()
    server = EmbeddedUvicorn(
        recording, "127.0.0.1", port, tls=issue_credentials(tmp_path / "worker", ca, "worker")
    )
    task = asyncio.create_task(server.run())
    await eventually(lambda: server.started)
    yield Relay(f"https://127.0.0.1:{port}", ca, revoked, tmp_path, client_ports)
    await server.stop()
    await task
    await session.close()


async def test_members_stream_through_it(relay: Relay) -> None:
    for node, role in (("box2", pki.NODE), ("laptop", pki.CLIENT)):
        async with relay.client(node, role) as client:
            ok = await client.post(URL, json=BODY)
            assert ok.status_code == 200 and ok.json()["choices"]
    async with relay.client("box3") as client:
        async with client.stream("POST", URL, json={**BODY, "stream": True}) as reply:
            lines = [line async for line in reply.aiter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        unknown = await client.post("/relay/other/v1/chat/completions", json=BODY)
        assert unknown.status_code == 404
        assert (await client.post("/relay/inst-1/slots", json={})).status_code == 400
        assert (await client.get("/health")).status_code == 404  # probes live elsewhere


async def test_strangers_get_no_connection(relay: Relay) -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    async with httpx.AsyncClient(base_url=relay.url, verify=unverified) as client:
        with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
            await client.post(URL, json=BODY)
    async with relay.client("box1", ca=pki.create_ca(MESH)) as client:  # another CA
        with pytest.raises(httpx.HTTPError):
            await client.post(URL, json=BODY)
    async with httpx.AsyncClient(base_url=relay.url.replace("https", "http")) as client:
        with pytest.raises(httpx.HTTPError):  # plain HTTP
            await client.post(URL, json=BODY)


async def test_a_revoked_node_is_refused_as_a_relay_error(relay: Relay) -> None:
    async with relay.client("box4") as client:
        assert (await client.post(URL, json=BODY)).status_code == 200
        identity = pki.Credentials(relay.home / "box4").identity()
        relay.revoked.add(identity.serial)
        refused = await client.post(URL, json=BODY)
        assert refused.status_code == 403 and RELAY_ERROR_HEADER in refused.headers
        assert "revoked" in refused.json()["error"]["message"]


async def test_a_gateway_reuses_its_connection_to_a_relay(relay: Relay) -> None:
    """The gateway's relay session keeps connections alive across requests, streamed or
    not: one TLS handshake, not one per request (llama-server behind the relay closes its
    connection after every answer; that must not leak through)."""
    credentials = issue_credentials(relay.home / "gw", relay.ca, "gw")
    session = relay_session(credentials.client_context(check_name=False))
    try:
        for stream in (False, True, False, True):
            async with session.post(relay.url + URL, json={**BODY, "stream": stream}) as reply:
                assert reply.status == 200
                assert b"[DONE]" in await reply.read() if stream else (await reply.json())["id"]
    finally:
        await session.close()
    assert len(relay.client_ports) == 4 and len(set(relay.client_ports)) == 1
