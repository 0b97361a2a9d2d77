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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_nodes import converge, gateway_tables, register_node

from meshllm.cli.etcd import EtcdServer
from meshllm.core.store import EtcdStore


async def measure(etcd: EtcdServer, nodes: int, gateways: int, changes: int) -> dict[str, float]:
    mesh = f"bench-{gateways}-{time.time_ns()}"
    async with (
        EtcdStore.connect([etcd.endpoint]) as writer,
        gateway_tables(etcd.endpoint, mesh, gateways) as tables,
    ):
        joins = (register_node(writer, mesh, i) for i in range(nodes))
        leases = list(await asyncio.gather(*joins))
        await converge(tables, nodes, time.perf_counter(), timeout=None)
        delays: list[float] = []
        cpu_before = time.process_time()
        for i in range(changes):
            started = time.perf_counter()
            await writer.revoke_lease(leases[i])
            delays.append(await converge(tables, nodes - 1, started, timeout=None))
            started = time.perf_counter()
            leases[i] = await register_node(writer, mesh, nodes + i)
            delays.append(await converge(tables, nodes, started, timeout=None))
        cpu = time.process_time() - cpu_before
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
