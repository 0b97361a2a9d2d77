"""Planning at scale: the scheduler's whole plan (demand policy, placement and the inputs it
derives from the watch caches) for a simulated mesh of N nodes and M models, and what a watch
event costs the caches it lands in.

    python bench/planner_scale.py [--nodes 1000] [--models 200] [--rounds 20] [--markdown]

The mesh: one device per node (8, 24 or 80 GiB); models of 0.5 to 60 GiB, a third of them
mixtures, half pinned by a node and half asked for by traffic at random rates; every worker
reports its round-trip time to every other node (the all-pairs probe). Everything runs in
this process: the caches are fed through the same code path watch events take.

- cold: the first plan, nothing placed yet;
- steady: a plan once the mesh has settled (each plan's assignments applied until a plan
  changes nothing; a hot model gains a replica a plan): what almost every plan is;
- event: one worker record changing in a cache of N.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import PrefixCache, WatchEvent
from meshllm.scheduler.planner import MeshView, plan_mesh
from meshllm.scheduler.settings import DemandSettings, PlacementSettings

GiB = 2**30
MESH = "bench"


def feed(cache: PrefixCache, key: str, message: object) -> None:
    """One watch event, through the cache's own path."""
    cache._apply(WatchEvent(key, message.SerializeToString(), 0))  # type: ignore[attr-defined]


def build_view(nodes: int, models: int, seed: int = 7) -> MeshView:
    rng = random.Random(seed)
    view = MeshView(None, MESH)  # type: ignore[arg-type]  # fed by hand, never by a watch
    names = [f"node-{i:04d}" for i in range(nodes)]
    for i, node in enumerate(names):
        budget = (8, 24, 80)[i % 3] * GiB
        record = pb.WorkerRecord(
            node=node,
            worker_id="gpu0",
            lease_id=i + 1,
            rpc_version="7.0.0",
            device=pb.Device(id="gpu0", memory_budget_bytes=budget),
        )
        feed(view.workers, keys.worker(MESH, node, "gpu0"), record)
    for node in names:
        rtt = pb.RttReport(node=node, worker_id="gpu0")
        for other in names:
            if other != node:
                rtt.rtt_ms[other] = rng.uniform(0.2, 120)
        feed(view.rtt, keys.rtt(MESH, node, "gpu0"), rtt)
    for m in range(models):
        name = f"model-{m:03d}"
        size = rng.choice([0.5, 1, 2, 4, 8, 16, 30, 60]) * GiB
        facts = pb.ModelFacts(
            file_size_bytes=int(size), context_length=8192, kv_bytes_per_token=64 * 1024
        )
        if m % 3 == 0:
            facts.expert_count, facts.expert_used_count = 64, 8
            facts.expert_tensor_bytes = int(size * 0.8)
        entry = pb.CatalogEntry(name=name, facts=facts)
        entry.source.kind = pb.MODEL_SOURCE_KIND_PATH
        feed(view.catalog, keys.catalog_entry(MESH, name), entry)
        holder = names[rng.randrange(nodes)]
        feed(view.files, keys.file_entry(MESH, name, holder), pb.ModelFile(model=name, node=holder))
        if m % 2 == 0:
            demand = pb.Demand(model=name, origin=holder, pinned=True)
        else:
            demand = pb.Demand(model=name, origin="gw", requests_per_minute=rng.uniform(0, 120))
        feed(view.demand, keys.demand_entry(MESH, name, demand.origin), demand)
    for cache in view.caches:
        cache.ready.set()
    return view


def apply_plan(view: MeshView, result) -> None:  # type: ignore[no-untyped-def]
    for key in result.delete:
        view.assignments._apply(WatchEvent(key, None, 0))
    for _, a in result.create:
        a.created_unix = 1
        feed(view.assignments, keys.assignment(MESH, a.node, a.worker_id, a.id), a)


def measure(nodes: int, models: int, rounds: int) -> dict[str, float]:
    started = time.perf_counter()
    view = build_view(nodes, models)
    built = time.perf_counter() - started
    settings = PlacementSettings()
    policy = DemandSettings(dwell_s=1e9)  # the demand stays as it is between rounds
    now = time.time()
    started = time.perf_counter()
    result = plan_mesh(view, settings, policy, now)
    cold = time.perf_counter() - started
    apply_plan(view, result)
    placed = sum(s.placed for s in result.status.values())
    settling = 1  # plans until one changes nothing: a hot model gains a replica a plan
    while (step := plan_mesh(view, settings, policy, now)).create or step.delete:
        apply_plan(view, step)
        settling += 1
        assert settling <= 20, "the plan did not settle in 20 plans"
    steady: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        again = plan_mesh(view, settings, policy, now)
        steady.append(time.perf_counter() - started)
        assert not again.create and not again.delete, "the plan did not settle"
    events: list[float] = []
    record = next(iter(view.workers.items.values()))
    key = keys.worker(MESH, record.node, record.worker_id)
    for i in range(200):
        record.started_unix = i
        started = time.perf_counter()
        feed(view.workers, key, record)
        events.append(time.perf_counter() - started)
    return {
        "build_s": built,
        "cold_ms": cold * 1000,
        "steady_p50_ms": statistics.median(steady) * 1000,
        "steady_max_ms": max(steady) * 1000,
        "event_us": statistics.median(events) * 1e6,
        "assignments": len(view.assignments.items),
        "placed": placed,
        "settling_plans": settling,
        "models": len(result.status),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    r = measure(args.nodes, args.models, args.rounds)
    if args.markdown:
        print("| nodes | models | cold plan | steady plan p50 / max | one watch event |")
        print("|---|---|---|---|---|")
        print(
            f"| {args.nodes} | {args.models} ({r['placed']} placed, {r['assignments']} "
            f"assignments) | {r['cold_ms']:.0f} ms | {r['steady_p50_ms']:.0f} / "
            f"{r['steady_max_ms']:.0f} ms | {r['event_us']:.0f} µs |"
        )
    else:
        for k, v in r.items():
            print(f"{k:>14}: {v:.2f}" if isinstance(v, float) else f"{k:>14}: {v}")


if __name__ == "__main__":
    main()
