"""The console's /api/status on a real store: what it says about round-trip times between
nodes and about split groups."""

from __future__ import annotations

import asyncio

import httpx

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.console import create_console
from meshllm.gateway.endpoints import EndpointTable


async def status_of(store: EtcdStore, mesh_id: str, ready: str) -> dict:
    table = EndpointTable(store, mesh_id)
    app, caches = create_console(store, mesh_id, table)
    tasks = [asyncio.create_task(c.run()) for c in [*table.caches, *caches]]
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            for _ in range(100):
                status = (await client.get("/api/status")).json()
                if ready in str(status):
                    return status
                await asyncio.sleep(0.05)
        raise AssertionError(f"/api/status never showed {ready}: {status}")
    finally:
        for cache in [*table.caches, *caches]:
            await cache.stop()
        await asyncio.gather(*tasks)


async def test_status_shows_round_trip_times_and_split_groups(
    store: EtcdStore, mesh_id: str
) -> None:
    await store.put(
        keys.rtt(mesh_id, "n1", "cpu0"),
        pb.RttReport(node="n1", worker_id="cpu0", rtt_ms={"n2": 12.5, "n3": 95.0}),
    )
    host = pb.Assignment(
        id="g1", group_id="g1", model="big", node="n1", worker_id="cpu0",
        role=pb.ASSIGNMENT_ROLE_HOST, share=0.6,
        peers=[pb.PeerShare(node="n2", worker_id="cpu0", share=0.4, assignment_id="p1")],
    )  # fmt: skip
    peer = pb.Assignment(
        id="p1", group_id="g1", model="big", node="n2", worker_id="cpu0",
        role=pb.ASSIGNMENT_ROLE_PEER, share=0.4,
    )  # fmt: skip
    await store.put(keys.assignment(mesh_id, "n1", "cpu0", "g1"), host)
    await store.put(keys.assignment(mesh_id, "n2", "cpu0", "p1"), peer)
    status = await status_of(store, mesh_id, "'p1'")
    assert status["rtt"] == [{"node": "n1", "worker": "cpu0", "rtt_ms": {"n2": 12.5, "n3": 95.0}}]
    assert status["groups"] == [
        {
            "model": "big",
            "group": "g1",
            "members": [
                {"role": "host", "node": "n1", "worker": "cpu0", "share": 0.6, "assignment": "g1"},
                {"role": "peer", "node": "n2", "worker": "cpu0", "share": 0.4, "assignment": "p1"},
            ],
        }
    ]


async def test_status_shows_each_expert_shard_with_its_experts_and_measured_quality(
    store: EtcdStore, mesh_id: str
) -> None:
    def shard(node: str, experts: list[int]) -> pb.Assignment:
        spec = pb.ShardSpec(
            shard_id=f"s-{node}", expert_count=len(experts), core=2, plan=["s-n1", "s-n2"],
            layers=[pb.LayerExperts(experts=experts)] * 2,
        )  # fmt: skip
        return pb.Assignment(
            id=f"a-{node}", group_id="g9", model="moe", node=node, worker_id="cpu0",
            role=pb.ASSIGNMENT_ROLE_SHARD, shard=spec,
        )  # fmt: skip

    for a in (shard("n1", [0, 1, 2]), shard("n2", [0, 1, 3])):
        await store.put(keys.assignment(mesh_id, a.node, "cpu0", a.id), a)
    record = pb.ShardRecord(
        model="moe", spec=pb.ShardSpec(shard_id="s-n1"), node="n1", passed=True,
        ppl_ratio=1.02, same_top=0.97, quality="perplexity x1.020 …: passes the gate",
    )  # fmt: skip
    await store.put(keys.shard(mesh_id, "moe", "s-n1"), record)
    status = await status_of(store, mesh_id, "passes the gate")
    [group] = status["shards"]
    assert (group["model"], group["group"], group["planned"]) == ("moe", "g9", 2)
    first, second = group["members"]
    assert first["node"] == "n1" and first["experts"] == 3 and first["core"] == 2
    assert first["expert_ids"] == [[0, 1, 2], [0, 1, 2]]
    assert first["quality"] == {
        "passed": True, "ppl_ratio": 1.02, "same_top": 0.97,
        "verdict": "perplexity x1.020 …: passes the gate", "measured_on": "n1",
    }  # fmt: skip
    assert second["node"] == "n2" and second["quality"] is None  # not measured yet


async def test_status_shows_the_demand_behind_each_placement(
    store: EtcdStore, mesh_id: str
) -> None:
    await store.put(
        keys.placement(mesh_id, "hot"),
        pb.PlacementStatus(
            model="hot", placed=True, replicas=2, mesh_replicas=3, requests_per_minute=240.5,
            demand="hot: 240.5 requests/min over 2 replicas: one more replica",
            next=["replica 1 more: every device that could take it serves it already"],
        ),
    )  # fmt: skip
    status = await status_of(store, mesh_id, "one more replica")
    (placed,) = status["placement"]
    assert placed["requestsPerMinute"] == 240.5 and placed["replicas"] == 2
    assert placed["meshReplicas"] == 3 and "serves it already" in placed["next"][0]
