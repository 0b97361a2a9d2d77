"""Watch fan-out: how fast every gateway's routing table follows a change in the mesh, and
what each table costs per change, with N simulated nodes and G gateway tables (each on its
own etcd connection, as separate gateway processes would be).

    python bench/watch_fanout.py [--nodes 200] [--gateways 1,10,50] [--changes 50] [--markdown]

Starts its own etcd (Debian's `etcd` binary) in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from meshllm.cli.etcd import EtcdServer
from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.endpoints import EndpointTable

MODELS = 8


async def add_node(store: EtcdStore, mesh: str, i: int) -> int:
    lease = await store.grant_lease(120)
    node, model = f"node-{i:04d}", f"model-{i % MODELS}"
    await store.put(
        keys.worker(mesh, node, "gpu0"),
        pb.WorkerRecord(node=node, worker_id="gpu0", lease_id=lease),
        lease=lease,
    )
    await store.put(
        keys.endpoint(mesh, model, f"{node}-i"),
        pb.Endpoint(model=model, instance_id=f"{node}-i", node=node),
        lease=lease,
    )
    return lease


def replicas(table: EndpointTable) -> int:
    return sum(len(e) for e in table.served_models().values())


async def converge(tables: list[EndpointTable], expected: int, started: float) -> float:
    """Seconds from `started` (before the write) until every table holds `expected`
    replicas, woken by the tables' own change listeners (run after each table rebuilt)."""
    changed = asyncio.Event()
    for table in tables:
        table.endpoints.listeners.append(changed.set)
    try:
        while any(replicas(t) != expected for t in tables):
            changed.clear()
            await changed.wait()
    finally:
        for table in tables:
            table.endpoints.listeners.remove(changed.set)
    return time.perf_counter() - started


async def measure(etcd: EtcdServer, nodes: int, gateways: int, changes: int) -> dict[str, float]:
    mesh = f"bench-{gateways}-{time.time_ns()}"
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(EtcdStore.connect([etcd.endpoint]))
        tables = []
        for _ in range(gateways):
            store = await stack.enter_async_context(EtcdStore.connect([etcd.endpoint]))
            tables.append(EndpointTable(store, mesh))
        tasks = [asyncio.create_task(c.run()) for t in tables for c in t.caches]
        leases = list(await asyncio.gather(*(add_node(writer, mesh, i) for i in range(nodes))))
        await converge(tables, nodes, time.perf_counter())
        delays: list[float] = []
        cpu_before = time.process_time()
        for i in range(changes):
            started = time.perf_counter()
            await writer.revoke_lease(leases[i])
            delays.append(await converge(tables, nodes - 1, started))
            started = time.perf_counter()
            leases[i] = await add_node(writer, mesh, nodes + i)
            delays.append(await converge(tables, nodes, started))
        cpu = time.process_time() - cpu_before
        for table in tables:
            for cache in table.caches:
                await cache.stop()
        await asyncio.gather(*tasks)
    delays.sort()
    return {
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[int(len(delays) * 0.99) - 1] * 1000,
        "max_ms": delays[-1] * 1000,
        # each change is 2 watch events (worker record + endpoint) per table; the writer's
        # own RPCs are included, so this is an upper bound
        "cpu_us_per_event_per_table": cpu / (len(delays) * 2 * gateways) * 1e6,
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        await etcd.start()
        try:
            rows = []
            for gateways in args.gateways:
                print(f"measuring {gateways} gateways x {args.nodes} nodes …", file=sys.stderr)
                rows.append((gateways, await measure(etcd, args.nodes, gateways, args.changes)))
        finally:
            await etcd.stop()
    print(
        f"`python bench/watch_fanout.py {' '.join(sys.argv[1:])}` — {args.nodes} nodes, "
        f"{args.changes} node deaths + {args.changes} joins\n"
    )
    print("| gateways | converge p50 ms | p99 ms | max ms | CPU µs per event per table |")
    print("|---:|---:|---:|---:|---:|")
    for gateways, r in rows:
        print(
            f"| {gateways} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
            f"{r['cpu_us_per_event_per_table']:.0f} |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument(
        "--gateways", type=lambda v: [int(x) for x in v.split(",")], default=[1, 10, 50]
    )
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--markdown", action="store_true", help="(the output is markdown)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
