"""200 simulated nodes in one real etcd (light fake workers: a lease, a WorkerRecord and an
endpoint each) and ten gateways' routing tables, each on its own etcd connection as separate
gateway processes would be: every table converges within a second of every change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from meshllm.cli.etcd import EtcdServer
from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.endpoints import EndpointTable

pytestmark = pytest.mark.integration
NODES = 200
GATEWAYS = 10
MODELS = 8


async def register_node(store: EtcdStore, mesh: str, i: int, ttl_s: int = 60) -> int:
    lease = await store.grant_lease(ttl_s)
    node = f"node-{i:03d}"
    model = f"model-{i % MODELS}"
    await store.put(
        keys.worker(mesh, node, "gpu0"),
        pb.WorkerRecord(node=node, worker_id="gpu0", lease_id=lease),
        lease=lease,
    )
    await store.put(
        keys.endpoint(mesh, model, f"{node}-i"),
        pb.Endpoint(
            model=model, instance_id=f"{node}-i", node=node, local_url="http://127.0.0.1:1"
        ),
        lease=lease,
    )
    return lease


@pytest.fixture
async def tables(etcd: EtcdServer, mesh_id: str) -> AsyncIterator[list[EndpointTable]]:
    async with AsyncExitStack() as stack:
        made = []
        for _ in range(GATEWAYS):
            store = await stack.enter_async_context(EtcdStore.connect([etcd.endpoint]))
            made.append(EndpointTable(store, mesh_id))
        tasks = [asyncio.create_task(c.run()) for t in made for c in t.caches]
        yield made
        for table in made:
            for cache in table.caches:
                await cache.stop()
        await asyncio.gather(*tasks)


def replica_count(table: EndpointTable) -> int:
    return sum(len(e) for e in table.served_models().values())


async def converge(
    tables: list[EndpointTable], expected: int, started: float, timeout: float = 5.0
) -> float:
    """Seconds from `started` (taken before the write) until every table holds `expected`
    replicas (woken by their listeners)."""
    changed = asyncio.Event()
    for table in tables:
        table.endpoints.listeners.append(changed.set)
    try:
        async with asyncio.timeout(timeout):
            while any(replica_count(t) != expected for t in tables):
                changed.clear()
                await changed.wait()
    finally:
        for table in tables:
            table.endpoints.listeners.remove(changed.set)
    return time.perf_counter() - started


async def test_routing_tables_converge_within_a_second(
    store: EtcdStore, mesh_id: str, tables: list[EndpointTable]
) -> None:
    leases = list(await asyncio.gather(*(register_node(store, mesh_id, i) for i in range(NODES))))
    await converge(tables, NODES, time.perf_counter(), timeout=15)
    assert all(len(t.served_models()) == MODELS for t in tables)
    delays = []
    for i in range(20):  # a node dies (its lease is revoked), then a new one joins
        started = time.perf_counter()
        await store.revoke_lease(leases[i])
        delays.append(await converge(tables, NODES - 1, started))
        started = time.perf_counter()
        leases[i] = await register_node(store, mesh_id, NODES + i)
        delays.append(await converge(tables, NODES, started))
    delays.sort()
    assert delays[-1] < 1.0, f"slowest convergence {delays[-1]:.3f}s"
