"""200 simulated nodes in one real etcd (light fake workers: a lease, a WorkerRecord and an
endpoint each) and ten gateways' routing tables, each on its own etcd connection as separate
gateway processes would be: every table converges within a second of every change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from fake_nodes import MODELS, converge, gateway_tables, register_node

from meshllm.cli.etcd import EtcdServer
from meshllm.core.store import EtcdStore
from meshllm.gateway.endpoints import EndpointTable

pytestmark = pytest.mark.integration
NODES = 200
GATEWAYS = 10


@pytest.fixture
async def tables(etcd: EtcdServer, mesh_id: str) -> AsyncIterator[list[EndpointTable]]:
    async with gateway_tables(etcd.endpoint, mesh_id, GATEWAYS) as made:
        yield made


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
