"""The RPC tunnel between a split's host and a peer, over mutual TLS with a throwaway mesh's
certificates, in front of a loopback service standing in for rpc-server: bytes cross intact
both ways and are counted, only the named host gets through, and a peer that closes or goes
quiet is reported."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import eventually, issue_credentials

from meshllm.core import pki
from meshllm.worker.tunnel import Route, TunnelClient, TunnelServer, ping_ms

pytestmark = pytest.mark.integration
MESH = "m-tunnel"
INSTANCE = "w1-peer-a"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads and never answers: a frozen rpc-server as the host sees it."""
    while await reader.read(1 << 16):
        pass


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    writer.close()


@dataclass
class Peer:
    home: Path
    ca: tuple
    tunnel: str  # host:port of the peer's TunnelServer
    lost: list[str] = field(default_factory=list)

    async def client(self, node: str = "host", stall_s: float = 30) -> TunnelClient:
        credentials = issue_credentials(self.home / node, self.ca, node)
        client = TunnelClient(
            self.tunnel, INSTANCE, credentials, stall_s=stall_s, on_lost=self.lost.append
        )
        await client.start()
        return client


@pytest.fixture
def behaviour() -> list[Handler]:
    return [echo]


@pytest.fixture
async def peer(tmp_path: Path, behaviour: list[Handler]) -> AsyncIterator[Peer]:
    rpc = await asyncio.start_server(lambda r, w: behaviour[0](r, w), "127.0.0.1", 0)
    rpc_port = rpc.sockets[0].getsockname()[1]
    ca = pki.create_ca(MESH)
    server = TunnelServer(
        {INSTANCE: Route(rpc_port, "host")}.get,
        issue_credentials(tmp_path / "peer", ca, "peer"),
        mesh_id=MESH,
        revoked=frozenset(),
    )
    port = await server.start("127.0.0.1", 0)
    yield Peer(tmp_path, ca, f"127.0.0.1:{port}")
    await server.close()
    rpc.close()


async def exchange(client: TunnelClient, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(payload)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(payload)), 30)
    writer.close()
    return got


async def test_bytes_cross_intact_both_ways_and_are_counted(peer: Peer) -> None:
    client = await peer.client()
    try:
        small = await exchange(client, b"hello")
        payload = os.urandom(24 * 2**20)  # far more than any socket buffer: flow control
        assert small == b"hello" and await exchange(client, payload) == payload
        total = len(payload) + 5
        await eventually(lambda: client.traffic.from_peer == total)
        assert client.traffic.to_peer == total and client.traffic.round_trips >= 2
        assert peer.lost == []  # the host closing its own connection is not a loss
    finally:
        await client.close()


async def test_only_the_named_host_gets_through(peer: Peer) -> None:
    client = await peer.client("intruder")
    try:
        reader, _ = await asyncio.open_connection("127.0.0.1", client.port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing carried
        await eventually(lambda: bool(peer.lost))
        assert "serves only its host host" in peer.lost[0]
    finally:
        await client.close()


@pytest.mark.parametrize("behaviour", [[hang_up]])
async def test_a_peer_that_hangs_up_is_reported(peer: Peer) -> None:
    client = await peer.client()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"x")
        await eventually(lambda: bool(peer.lost))
        assert "closed the connection" in peer.lost[0]
    finally:
        await client.close()


@pytest.mark.parametrize("behaviour", [[swallow]])
async def test_a_peer_that_goes_quiet_is_reported_after_the_stall_time(peer: Peer) -> None:
    client = await peer.client(stall_s=1.0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"a request")
        waited = await eventually(lambda: bool(peer.lost), timeout=10)
        assert "left a request unanswered for 1s" in peer.lost[0] and waited >= 1.0
    finally:
        await client.close()


async def test_ping_answers_members(peer: Peer) -> None:
    credentials = issue_credentials(peer.home / "prober", peer.ca, "prober")
    rtt = await ping_ms(peer.tunnel, credentials)
    assert rtt is not None and 0 < rtt < 1000
