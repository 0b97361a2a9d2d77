"""Light simulated nodes in a real etcd (a lease, a WorkerRecord and an endpoint each) and
gateway routing tables that follow them, each table on its own etcd connection as separate
gateway processes would be. Used by tests/integration/test_scale.py and
bench/watch_fanout.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.endpoints import EndpointTable

MODELS = 8  # node i serves model-(i % MODELS)


async def register_node(store: EtcdStore, mesh: str, i: int, ttl_s: int = 120) -> int:
    """Node i joins with one endpoint; returns its lease (revoke it and the node is gone)."""
    lease = await store.grant_lease(ttl_s)
    node = f"node-{i:04d}"
    model = f"model-{i % MODELS}"
    await store.put(
        keys.worker(mesh, node, "gpu0"),
        pb.WorkerRecord(
            node=node,
            worker_id="gpu0",
            lease_id=lease,
            relay_url="http://127.0.0.1:1",
            grpc_address="127.0.0.1:2",
        ),
        lease=lease,
    )
    await store.put(
        keys.endpoint(mesh, model, f"{node}-i"),
        pb.Endpoint(
            model=model,
            instance_id=f"{node}-i",
            node=node,
            worker_id="gpu0",
            local_url="http://127.0.0.1:1",
            relay_url="http://127.0.0.1:1",
        ),
        lease=lease,
    )
    return lease


@asynccontextmanager
async def gateway_tables(
    endpoint: str, mesh: str, count: int
) -> AsyncIterator[list[EndpointTable]]:
    """`count` running routing tables on `mesh`, stopped on exit."""
    async with AsyncExitStack() as stack:
        tables = []
        for _ in range(count):
            store = await stack.enter_async_context(EtcdStore.connect([endpoint]))
            tables.append(EndpointTable(store, mesh))
        tasks = [asyncio.create_task(c.run()) for t in tables for c in t.caches]
        try:
            yield tables
        finally:
            for table in tables:
                for cache in table.caches:
                    await cache.stop()
            await asyncio.gather(*tasks)


def replica_count(table: EndpointTable) -> int:
    return sum(len(e) for e in table.served_models().values())


async def converge(
    tables: list[EndpointTable], expected: int, started: float, timeout: float | None = 5.0
) -> float:
    """Seconds from `started` (taken before the write) until every table holds `expected`
    replicas, woken by the tables' own change listeners (run after each table rebuilt). Every
    cache of a table counts: an endpoint is routed to only once its worker's record is in."""
    changed = asyncio.Event()
    for table in tables:
        for cache in table.caches:
            cache.listeners.append(changed.set)
    try:
        async with asyncio.timeout(timeout):
            while any(replica_count(t) != expected for t in tables):
                changed.clear()
                await changed.wait()
    finally:
        for table in tables:
            for cache in table.caches:
                cache.listeners.remove(changed.set)
    return time.perf_counter() - started
