"""What the console costs, measured on real parts.

1. `/api/status` for a simulated mesh of `--nodes` nodes (one worker each, all-pairs round
   trips) and `--models` models (each placed on a node, half of them serving, demand on all),
   written to a real etcd and read by the console's watch-fed view, served by uvicorn:
   the time of one GET and the answer's size.
2. `/api/events` latency on that mesh: a placement status written to etcd, and the time until
   an open event stream delivers a status that shows it (p50, p99).
3. The console's CPU on a real node (`mesh-llm serve` with the tiny model, one request a
   second through its API): the gateway's CPU seconds over `--seconds` with no page open,
   then with the console page open in headless Chromium, side by side.

    .venv/bin/python bench/console.py [--nodes 200] [--models 100] [--seconds 30] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import local_serve
from helpers import running_console

from meshllm.cli.etcd import EtcdServer
from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.console.status import Here

MESH = "bench-console"
GiB = 2**30


async def populate(store: EtcdStore, nodes: int, models: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    names = [f"node-{i:04d}" for i in range(nodes)]
    for i, node in enumerate(names):
        device = pb.Device(
            id="gpu0", kind=pb.DEVICE_KIND_CUDA, name="NVIDIA H100", uuid=f"GPU-{i:08d}",
            memory_total_bytes=80 * GiB, memory_free_bytes=60 * GiB,
            memory_budget_bytes=72 * GiB,
        )  # fmt: skip
        await store.put(
            keys.worker(MESH, node, "gpu0"),
            pb.WorkerRecord(
                node=node,
                worker_id="gpu0",
                device=device,
                grpc_address=f"{node}:1",
                relay_url=f"https://{node}:2",
            ),
        )
        rtt = pb.RttReport(node=node, worker_id="gpu0")
        for other in names:
            if other != node:
                rtt.rtt_ms[other] = rng.uniform(0.2, 120)
        await store.put(keys.rtt(MESH, node, "gpu0"), rtt)
        await store.put(
            keys.service(MESH, "gateway", f"g-{node}"),
            pb.ServiceRecord(kind="gateway", instance=f"g-{node}", node=node, version="0.1.0"),
        )
    for m in range(models):
        name = f"model-{m:03d}"
        node = names[m % nodes]
        facts = pb.ModelFacts(architecture="llama", file_size_bytes=8 * GiB, block_count=32)
        await store.put(keys.catalog_entry(MESH, name), pb.CatalogEntry(name=name, facts=facts))
        a = pb.Assignment(
            id=f"a{m}", group_id=f"a{m}", model=name, node=node, worker_id="gpu0",
            role=pb.ASSIGNMENT_ROLE_SOLO, memory_bytes=10 * GiB, context=8192,
        )  # fmt: skip
        await store.put(keys.assignment(MESH, node, "gpu0", a.id), a)
        await store.put(
            keys.placement(MESH, name),
            pb.PlacementStatus(model=name, placed=True, replicas=1, requests_per_minute=12.5),
        )
        if m % 2 == 0:
            endpoint = pb.Endpoint(
                model=name, instance_id=f"gpu0-a{m}", node=node, worker_id="gpu0",
                local_url="http://127.0.0.1:1", relay_url=f"https://{node}:2",
            )  # fmt: skip
            await store.put(keys.endpoint(MESH, name, endpoint.instance_id), endpoint)


async def simulated(nodes: int, models: int, changes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        await etcd.start()
        try:
            async with EtcdStore.connect([etcd.endpoint]) as store:
                await populate(store, nodes, models)
                return await measure_console(store, changes)
        finally:
            await etcd.stop()


async def measure_console(store: EtcdStore, changes: int) -> dict[str, float]:
    here = Here("node-0000", "0.1.0", "http://127.0.0.1:9337/v1", "http://127.0.0.1:3131")
    async with (
        running_console(store, MESH, here) as console,
        httpx.AsyncClient(base_url=console.url, timeout=30) as http,
    ):
        timings, size = [], 0
        for _ in range(20):
            started = time.perf_counter()
            reply = await http.get("/api/status")
            timings.append(time.perf_counter() - started)
            size = len(reply.content)
        delays = sorted(await event_delays(http, store, changes))
    return {
        "status_p50_ms": statistics.median(timings) * 1000,
        "status_bytes": size,
        "events_p50_ms": statistics.median(delays) * 1000,
        "events_p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000,
    }


async def event_delays(http: httpx.AsyncClient, store: EtcdStore, changes: int) -> list[float]:
    delays = []
    async with http.stream("GET", "/api/events") as events:
        lines = events.aiter_lines()
        await next_data(lines)  # the status at connection
        for i in range(changes):
            marker = f"change-{i}"
            status = pb.PlacementStatus(model="model-000", placed=True, reasons=[marker])
            written = time.perf_counter()
            await store.put(keys.placement(MESH, "model-000"), status)
            while marker not in await next_data(lines):
                pass
            delays.append(time.perf_counter() - written)
            await asyncio.sleep(0.15)  # past the feed's coalescing: each change on its own
    return delays


async def next_data(lines) -> str:  # type: ignore[no-untyped-def]
    async for line in lines:
        if line.startswith("data: "):
            return line
    raise AssertionError("the event stream ended")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def console_cpu(seconds: float) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    model = cached_model(ModelShape())
    with tempfile.TemporaryDirectory() as tmp:
        node = local_serve(Path(tmp) / "node", model)
        try:
            node.wait_event("model_ready")
            gateway = node.pid_of("gateway")
            idle = cpu_during(node, gateway, model.stem, seconds)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = browser.new_page()
                page.goto(node.console)
                page.wait_for_selector("#live[data-state=live]", timeout=20000)
                watched = cpu_during(node, gateway, model.stem, seconds)
                browser.close()
        finally:
            node.stop()
    return {"gateway_cpu_no_page": idle, "gateway_cpu_page_open": watched, "seconds": seconds}


def cpu_during(node, gateway: int, model: str, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """The gateway's CPU share (of one core) while one request a second goes through it."""
    before, started = cpu_seconds(gateway), time.monotonic()
    body = {"model": model, "prompt": "hi", "max_tokens": 4}
    while time.monotonic() - started < seconds:
        httpx.post(f"{node.api}/completions", json=body, timeout=30)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))
    return (cpu_seconds(gateway) - before) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    found = asyncio.run(simulated(args.nodes, args.models, args.changes))
    found.update(console_cpu(args.seconds))
    if not args.markdown:
        print(json.dumps(found, indent=2))
        return
    f = found
    rows = [
        (f"measure ({args.nodes} nodes, {args.models} models)", "value"),
        ("---", "---"),
        ("GET /api/status, p50", f"{f['status_p50_ms']:.1f} ms ({f['status_bytes'] / 1e3:.0f} kB)"),
        (
            "/api/events after a store change, p50 / p99",
            f"{f['events_p50_ms']:.1f} / {f['events_p99_ms']:.1f} ms",
        ),
        ("gateway CPU, 1 request/s, no page", f"{f['gateway_cpu_no_page'] * 100:.2f} % of a core"),
        (
            "gateway CPU, 1 request/s, console page open",
            f"{f['gateway_cpu_page_open'] * 100:.2f} % of a core",
        ),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
