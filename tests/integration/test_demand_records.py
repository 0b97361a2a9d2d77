"""The gateway records the demand its requests show, in a real etcd: requests for a known model
nobody serves get 503 with Retry-After and count; the store sees few writes however many
requests come; the record expires by itself once the requests stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from helpers import eventually

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.core.streaming import upstream_session
from meshllm.gateway import metrics
from meshllm.gateway.app import GatewayApp, create_api
from meshllm.gateway.demand import DemandRecorder, TrafficSettings
from meshllm.gateway.endpoints import EndpointTable
from meshllm.gateway.proxy import Proxy
from meshllm.gateway.routing import Router, RoutingSettings
from meshllm.gateway.settings import ProxySettings

pytestmark = pytest.mark.integration
TRAFFIC = TrafficSettings(write_interval_s=1.0, ttl_s=3, window_s=60)


@dataclass
class Recording:
    client: httpx.AsyncClient
    recorder: DemandRecorder
    store: EtcdStore
    mesh: str

    async def records(self, model: str) -> list[pb.Demand]:
        items, _ = await self.store.get_prefix(keys.demand(self.mesh, model), pb.Demand)
        return list(items.values())


@pytest.fixture
async def recording(store: EtcdStore, mesh_id: str) -> AsyncIterator[Recording]:
    table = EndpointTable(store, mesh_id)
    recorder = DemandRecorder(store, mesh_id, "gw-test", TRAFFIC)
    components = [*table.caches, recorder]
    tasks = [asyncio.create_task(c.run()) for c in components]
    session = upstream_session()
    proxy = Proxy(
        ProxySettings(retry_after_s=4),
        "node-a",
        table,
        Router(RoutingSettings()),
        lambda: session,
        lambda: session,
        recorder.record,
    )
    await store.put(keys.catalog_entry(mesh_id, "cold"), pb.CatalogEntry(name="cold"))
    await eventually(lambda: table.ready and table.entry("cold") is not None)
    app = GatewayApp(proxy, create_api(table))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield Recording(client, recorder, store, mesh_id)
    for c in components:
        await c.stop()
    await asyncio.gather(*tasks)
    await session.close()


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_requests_for_an_unserved_model_count_and_decay(recording: Recording) -> None:
    writes_before = metrics.DEMAND_WRITES._value.get()
    started = time.time()
    replies = await asyncio.gather(
        *(recording.client.post("/v1/chat/completions", json=chat("cold")) for _ in range(30))
    )
    for reply in replies:
        assert reply.status_code == 503 and reply.headers["retry-after"] == "4"
        assert reply.json()["error"]["code"] == "model_not_ready"

    async def written() -> list[pb.Demand]:
        for _ in range(100):
            found = await recording.records("cold")
            if found and found[0].requests_per_minute >= 30:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no demand record with every request: {found}")

    (record,) = await asyncio.wait_for(written(), 10)
    assert record.origin == "gateway-gw-test" and not record.pinned
    assert record.requests_per_minute == 30 and record.last_request_unix >= int(started)
    # 30 requests in well under a write interval: the first written at once, the rest once
    assert metrics.DEMAND_WRITES._value.get() - writes_before <= 2

    deadline = time.monotonic() + TRAFFIC.ttl_s + 3
    while await recording.records("cold"):
        assert time.monotonic() < deadline, "the demand record outlived its TTL"
        await asyncio.sleep(0.2)


async def test_an_unknown_model_gets_404_and_records_nothing(recording: Recording) -> None:
    reply = await recording.client.post("/v1/chat/completions", json=chat("no-such-model"))
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "model_not_found"
    await asyncio.sleep(TRAFFIC.write_interval_s + 0.5)
    items, _ = await recording.store.get_prefix(keys.demand(recording.mesh), pb.Demand)
    assert not items


async def test_steady_traffic_writes_once_per_interval(recording: Recording) -> None:
    writes_before = metrics.DEMAND_WRITES._value.get()
    stop = time.monotonic() + 3.2
    sent = 0
    while time.monotonic() < stop:
        await recording.client.post("/v1/chat/completions", json=chat("cold"))
        sent += 1
        await asyncio.sleep(0.02)
    writes = metrics.DEMAND_WRITES._value.get() - writes_before
    assert sent > 50
    assert 2 <= writes <= 5  # one at once, then about one per second
