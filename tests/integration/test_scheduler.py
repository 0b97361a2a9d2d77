"""Two real scheduler processes on one etcd: exactly one leads and writes assignments; when
it goes, the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import eventually

from meshllm.cli.etcd import EtcdServer
from meshllm.core import keys
from meshllm.core.clients import SchedulerClient
from meshllm.core.errors import Unavailable
from meshllm.core.ports import free_port
from meshllm.core.process import ChildProcess
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, Fence, FenceLost, LeaseKeeper
from meshllm.scheduler.leader import LeaderElection
from meshllm.scheduler.planner import MeshView, Planner
from meshllm.scheduler.settings import PlacementSettings, SchedulerSettings

pytestmark = pytest.mark.integration
GiB = 2**30


class Scheduler:
    def __init__(self, etcd: EtcdServer, mesh: str, log_dir: Path, name: str) -> None:
        self.settings = SchedulerSettings(
            etcd_endpoints=etcd.endpoint,
            mesh_id=mesh,
            grpc_port=free_port(),
            http_port=free_port(),
            lease_ttl_s=2,
        )
        self.process = ChildProcess(
            name,
            [sys.executable, "-m", "meshllm.scheduler"],
            env={**os.environ, **self.settings.to_env()},
            log_path=log_dir / f"{name}.log",
            death_signal=None,  # the fixture stops them itself
        )
        self.client = SchedulerClient(f"127.0.0.1:{self.settings.grpc_port}")

    async def is_leader(self) -> bool:
        return (await self.client.plan()).leader


@pytest.fixture
async def schedulers(
    etcd: EtcdServer, mesh_id: str, tmp_path: Path
) -> AsyncIterator[list[Scheduler]]:
    pair = [Scheduler(etcd, mesh_id, tmp_path, f"scheduler-{i}") for i in range(2)]
    for s in pair:
        await s.process.start()
    yield pair
    for s in pair:
        await s.process.stop(5)
        await s.client.close()


async def leaders(pair: list[Scheduler]) -> list[bool | None]:
    """Each scheduler's answer; None from one not answering (yet)."""
    answers: list[bool | None] = []
    for s in pair:
        try:
            answers.append(await s.is_leader())
        except Unavailable:
            answers.append(None)
    return answers


async def wait_until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def assignment_models(store: EtcdStore, mesh: str) -> list[str]:
    items, _ = await store.get_prefix(keys.assignments(mesh), pb.Assignment)
    return sorted(a.model for a in items.values())


async def test_one_leader_acts_and_the_other_takes_over(
    schedulers: list[Scheduler], store: EtcdStore, mesh_id: str
) -> None:
    async def exactly_one() -> bool:
        answers = await leaders(schedulers)  # both answering, one of them leading
        return None not in answers and sorted(answers) == [False, True]  # type: ignore[type-var]

    await wait_until(exactly_one)
    lease = await store.grant_lease(30)
    await store.put(
        keys.worker(mesh_id, "n1", "gpu0"),
        pb.WorkerRecord(
            node="n1",
            worker_id="gpu0",
            lease_id=lease,
            device=pb.Device(id="gpu0", memory_budget_bytes=8 * GiB),
        ),
        lease=lease,
    )
    for model in ("a", "b"):
        await store.put(
            keys.catalog_entry(mesh_id, model),
            pb.CatalogEntry(
                name=model, facts=pb.ModelFacts(file_size_bytes=GiB, context_length=2048)
            ),
        )
    await store.put(keys.demand_entry(mesh_id, "a", "n1"), pb.Demand(model="a"), lease=lease)

    async def a_assigned() -> bool:
        return await assignment_models(store, mesh_id) == ["a"]

    await wait_until(a_assigned)
    await asyncio.sleep(1.0)  # both schedulers have seen it: still one assignment, not two
    assert await assignment_models(store, mesh_id) == ["a"]

    await wait_until(exactly_one)
    flags = await leaders(schedulers)
    leader, standby = (schedulers[0], schedulers[1]) if flags[0] else (schedulers[1], schedulers[0])
    leader.process.signal(signal.SIGKILL)
    await leader.process.wait()

    async def standby_leads() -> bool:
        return (await leaders([standby])) == [True]

    await wait_until(standby_leads, timeout=10)
    await store.put(keys.demand_entry(mesh_id, "b", "n1"), pb.Demand(model="b"), lease=lease)

    async def both_assigned() -> bool:
        return await assignment_models(store, mesh_id) == ["a", "b"]

    await wait_until(both_assigned)
    plan = await standby.client.plan()
    assert plan.leader and plan.leader_instance and not plan.pending
    explained = await standby.client.explain("a")
    assert explained.status.placed and explained.assignments[0].node == "n1"


async def test_pending_model_is_explained(
    schedulers: list[Scheduler], store: EtcdStore, mesh_id: str
) -> None:
    lease = await store.grant_lease(30)
    await store.put(
        keys.worker(mesh_id, "small", "cpu0"),
        pb.WorkerRecord(
            node="small",
            worker_id="cpu0",
            lease_id=lease,
            device=pb.Device(id="cpu0", memory_budget_bytes=GiB),
        ),
        lease=lease,
    )
    await store.put(
        keys.catalog_entry(mesh_id, "huge"),
        pb.CatalogEntry(name="huge", facts=pb.ModelFacts(file_size_bytes=40 * GiB)),
    )
    await store.put(
        keys.demand_entry(mesh_id, "huge", "small"), pb.Demand(model="huge"), lease=lease
    )

    async def pending() -> bool:
        try:
            return any([(await s.client.plan()).pending for s in schedulers])
        except Unavailable:  # still starting
            return False

    async def explained() -> bool:  # each scheduler answers from its own watch of the store
        status = (await schedulers[0].client.explain("huge")).status
        return not status.placed and any("small/cpu0: needs" in r for r in status.reasons)

    await wait_until(pending)
    await wait_until(explained)
    assert await assignment_models(store, mesh_id) == []


async def test_a_mixture_too_big_for_any_worker_waits_for_its_ranking_then_is_sharded(
    schedulers: list[Scheduler], store: EtcdStore, mesh_id: str
) -> None:
    lease = await store.grant_lease(30)
    for node in ("n1", "n2"):
        await store.put(
            keys.worker(mesh_id, node, "gpu0"),
            pb.WorkerRecord(
                node=node, worker_id="gpu0", lease_id=lease,
                device=pb.Device(id="gpu0", memory_budget_bytes=10 * GiB),
            ),
            lease=lease,
        )  # fmt: skip
    facts = pb.ModelFacts(
        file_size_bytes=12 * GiB, expert_tensor_bytes=10 * GiB, expert_count=8,
        expert_used_count=2, block_count=2, context_length=2048,
    )  # fmt: skip
    await store.put(
        keys.catalog_entry(mesh_id, "moe"),
        pb.CatalogEntry(name="moe", facts=facts, registered_unix=1),
    )
    await store.put(
        keys.file_entry(mesh_id, "moe", "n1"), pb.ModelFile(model="moe", node="n1"), lease=lease
    )
    await store.put(keys.demand_entry(mesh_id, "moe", "n1"), pb.Demand(model="moe"), lease=lease)

    async def says(text: str) -> bool:
        try:
            explained = await schedulers[0].client.explain("moe")
        except Unavailable:
            return False
        return any(text in r for r in explained.status.reasons)

    await wait_until(lambda: says("waiting for the registry to rank the experts"))
    order = [pb.LayerRanking(experts=list(range(8)))] * 2
    await store.put(
        keys.expert_ranking(mesh_id, "moe"),
        pb.ExpertRanking(model="moe", method="imatrix", layers=order, ranked_unix=2),
    )
    await wait_until(lambda: says("expert shards over 2 devices"))
    explained = await schedulers[0].client.explain("moe")
    shards = {a.node: a.shard for a in explained.assignments}
    assert sorted(shards) == ["n1", "n2"] and explained.status.placed
    assert all(s.expert_count == 5 and s.core == 2 for s in shards.values())
    record = pb.ShardRecord(model="moe", spec=shards["n2"], passed=True, written_unix=3)
    await store.put(keys.shard(mesh_id, "moe", shards["n2"].shard_id), record)

    async def shows_record() -> bool:
        return len((await schedulers[0].client.explain("moe")).shards) == 1

    await wait_until(shows_record)


async def put_worker(store: EtcdStore, mesh: str, node: str, budget_gib: float) -> int:
    lease = await store.grant_lease(30)
    await store.put(
        keys.worker(mesh, node, "gpu0"),
        pb.WorkerRecord(
            node=node,
            worker_id="gpu0",
            lease_id=lease,
            device=pb.Device(id="gpu0", memory_budget_bytes=int(budget_gib * GiB)),
        ),
        lease=lease,
    )
    return lease


async def test_traffic_starts_a_replica_on_a_standby_and_its_expiry_frees_it(
    schedulers: list[Scheduler], store: EtcdStore, mesh_id: str
) -> None:
    for node in ("n1", "n2"):
        await put_worker(store, mesh_id, node, 4)
    await store.put(
        keys.catalog_entry(mesh_id, "m"),
        pb.CatalogEntry(name="m", facts=pb.ModelFacts(file_size_bytes=GiB, context_length=2048)),
    )
    traffic = await store.grant_lease(3)  # as a gateway writes it: never kept alive
    await store.put(
        keys.demand_entry(mesh_id, "m", "gateway-x"),
        pb.Demand(model="m", origin="gateway-x", requests_per_minute=2, last_request_unix=1),
        lease=traffic,
    )

    async def assigned() -> bool:
        return await assignment_models(store, mesh_id) == ["m"]

    await wait_until(assigned)
    items, _ = await store.get_prefix(keys.assignments(mesh_id), pb.Assignment)
    (a,) = items.values()
    assert a.origin == "" and a.node in ("n1", "n2")
    leader = schedulers[(await leaders(schedulers)).index(True)]

    async def explained() -> bool:  # the status is written after the assignments
        return (await leader.client.explain("m")).status.placed

    await wait_until(explained)
    status = (await leader.client.explain("m")).status
    assert status.placed and status.replicas == 1 and status.mesh_replicas == 1
    assert status.requests_per_minute == 2 and "no node serves it" in status.demand

    async def freed() -> bool:
        return await assignment_models(store, mesh_id) == []

    await wait_until(freed, timeout=10)


async def put_model_and_demand(store: EtcdStore, mesh: str, model: str, lease: int) -> None:
    await store.put(
        keys.catalog_entry(mesh, model),
        pb.CatalogEntry(name=model, facts=pb.ModelFacts(file_size_bytes=GiB, context_length=2048)),
    )
    await store.put(keys.demand_entry(mesh, model, "n1"), pb.Demand(model=model), lease=lease)


async def test_a_planner_holding_a_stale_fence_writes_nothing(
    store: EtcdStore, mesh_id: str
) -> None:
    lease = await put_worker(store, mesh_id, "n1", 8)
    await put_model_and_demand(store, mesh_id, "a", lease)
    view = MeshView(store, mesh_id)
    keeper = LeaseKeeper(store, 10)
    await keeper.start()
    election = LeaderElection(store, keeper, mesh_id, "me", interval_s=60)
    planner = Planner(store, keeper, view, mesh_id, election, PlacementSettings())
    tasks = [asyncio.create_task(c.run()) for c in view.caches]
    try:
        await view.ready()
        leader_key = keys.leader(mesh_id, "scheduler")
        assert await store.put_if_absent(leader_key, b"me", lease=keeper.lease_id)
        held = await store.holder(leader_key)
        assert held is not None
        election.fence = Fence(leader_key, held[2] - 1)  # a lead held once, lost since
        election.is_leader.set()
        with pytest.raises(FenceLost):
            await planner._replan()
        assert await assignment_models(store, mesh_id) == []
        placements, _ = await store.get_prefix(keys.placements(mesh_id), pb.PlacementStatus)
        assert not placements
        election.fence = Fence(leader_key, held[2])  # the lead it holds now: it writes
        await planner._replan()
        assert await assignment_models(store, mesh_id) == ["a"]
    finally:
        for c in view.caches:
            await c.stop()
        await asyncio.gather(*tasks)
        await keeper.stop()


async def test_a_leader_paused_past_its_lease_writes_nothing_when_it_resumes(
    etcd: EtcdServer, store: EtcdStore, mesh_id: str, tmp_path: Path
) -> None:
    scheduler = Scheduler(etcd, mesh_id, tmp_path, "paused")  # lease TTL 2 s
    await scheduler.process.start()

    async def leads() -> bool:
        return (await leaders([scheduler]))[0] is True

    try:
        await wait_until(leads)
        lease = await put_worker(store, mesh_id, "n1", 8)
        scheduler.process.signal(signal.SIGSTOP)
        leader_key = keys.leader(mesh_id, "scheduler")

        async def lead_expired() -> bool:
            return await store.holder(leader_key) is None

        await wait_until(lead_expired, timeout=10)
        # another leader holds the key now; meanwhile there is work the paused one would do
        other = await store.grant_lease(30)
        assert await store.put_if_absent(leader_key, b"another", lease=other)
        await put_model_and_demand(store, mesh_id, "c", lease)
        scheduler.process.signal(signal.SIGCONT)

        async def stood_down() -> bool:
            return not await leads()

        await wait_until(stood_down, timeout=10)
        await asyncio.sleep(2.0)
        assert await assignment_models(store, mesh_id) == []
        # once the key is free again it leads, and does the work it left undone
        await store.revoke_lease(other)
        await wait_until(leads, timeout=10)

        async def assigned() -> bool:
            return await assignment_models(store, mesh_id) == ["c"]

        await wait_until(assigned)
    finally:
        scheduler.process.signal(signal.SIGCONT)
        await scheduler.process.stop(5)
        await scheduler.client.close()


async def test_a_worker_view_lasts_as_long_as_its_record(store: EtcdStore, mesh_id: str) -> None:
    view = MeshView(store, mesh_id)
    tasks = [asyncio.create_task(c.run()) for c in view.caches]
    try:
        await view.ready()
        await put_worker(store, mesh_id, "a", 8)
        await put_worker(store, mesh_id, "b", 24)
        await eventually(lambda: len(view.workers.items) == 2, timeout=10)
        first = {w.node: w for w in view.worker_views()}
        again = {w.node: w for w in view.worker_views()}
        assert all(again[n] is first[n] for n in ("a", "b"))  # nothing made anew
        await put_worker(store, mesh_id, "b", 40)  # its record changes
        await store.delete(keys.worker(mesh_id, "a", "gpu0"))
        await eventually(lambda: len(view.workers.items) == 1, timeout=10)
        [b] = view.worker_views()
        assert b is not first["b"] and b.node == "b" and b.budget == 40 * GiB
    finally:
        for c in view.caches:
            await c.stop()
        await asyncio.gather(*tasks)
