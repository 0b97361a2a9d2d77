"""The console's API on a real store: /api/status against its typed schema (round-trip times
from this node, split groups with each part's layers, expert shards with their experts and
measured quality, the demand behind a model), /api/events delivering a store change, the
invite shown to loopback only, and asking for and withdrawing a model."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from helpers import running_console, running_registry

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.console.schema import Status
from meshllm.gateway.console.status import Here
from meshllm.registry.settings import RegistrySettings

HERE = Here("n1", "0.1.0", "http://127.0.0.1:9337/v1", "http://127.0.0.1:3131", "mesh1.tok")


@asynccontextmanager
async def console(
    store: EtcdStore, mesh_id: str, client: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the console; `client`: the address requests seem to come from (another
    than loopback goes through an in-process transport)."""
    async with running_console(store, mesh_id, HERE) as running:
        if client == "127.0.0.1":
            http = httpx.AsyncClient(base_url=running.url, timeout=10)
        else:
            transport = httpx.ASGITransport(app=running.app, client=(client, 5000))  # type: ignore[arg-type]
            http = httpx.AsyncClient(transport=transport, base_url="http://console")
        async with http:
            yield http


async def status_showing(http: httpx.AsyncClient, text: str) -> dict:
    for _ in range(100):
        status = (await http.get("/api/status")).json()
        if text in json.dumps(status):
            Status.model_validate(status)  # every answer fits the schema
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"/api/status never showed {text}: {status}")


def worker(node: str) -> pb.WorkerRecord:
    device = pb.Device(
        id="cpu0", kind=pb.DEVICE_KIND_CPU, name="CPU", memory_total_bytes=8 << 30,
        memory_free_bytes=6 << 30, memory_budget_bytes=4 << 30,
    )  # fmt: skip
    return pb.WorkerRecord(node=node, worker_id="cpu0", device=device, grpc_address=f"{node}:1")


async def test_status_shows_nodes_with_their_devices_and_round_trips_from_here(
    store: EtcdStore, mesh_id: str
) -> None:
    for node in ("n1", "n2"):
        await store.put(keys.worker(mesh_id, node, "cpu0"), worker(node))
    await store.put(
        keys.rtt(mesh_id, "n1", "cpu0"),
        pb.RttReport(node="n1", worker_id="cpu0", rtt_ms={"n2": 12.5, "n3": 95.0}),
    )
    await store.put(
        keys.rtt(mesh_id, "n2", "cpu0"), pb.RttReport(node="n2", worker_id="cpu0", rtt_ms={"n1": 3})
    )
    async with console(store, mesh_id) as http:
        status = await status_showing(http, "12.5")
    n1, n2 = status["nodes"]
    assert (n1["id"], n1["rtt_ms"], n1["role"]) == ("n1", None, "standby")
    assert (n2["id"], n2["rtt_ms"]) == ("n2", 12.5)  # from this node, not from n2
    device = n2["workers"][0]["device"]
    assert device["memory_used_bytes"] == 2 << 30 and device["memory_budget_bytes"] == 4 << 30
    assert device["stable_id"] == "cpu:0" and device["pinnable"] is False
    assert status["this_node"]["invite_token"] == "mesh1.tok"  # asked from loopback


async def test_status_shows_a_split_with_each_parts_layers(store: EtcdStore, mesh_id: str) -> None:
    host = pb.Assignment(
        id="g1", group_id="g1", model="big", node="n1", worker_id="cpu0",
        role=pb.ASSIGNMENT_ROLE_HOST, share=0.6, memory_bytes=3 << 30, context=4096,
        peers=[pb.PeerShare(node="n2", worker_id="cpu0", share=0.4, assignment_id="p1")],
    )  # fmt: skip
    peer = pb.Assignment(
        id="p1", group_id="g1", model="big", node="n2", worker_id="cpu0",
        role=pb.ASSIGNMENT_ROLE_PEER, share=0.4, memory_bytes=2 << 30,
    )  # fmt: skip
    await store.put(keys.assignment(mesh_id, "n2", "cpu0", "p1"), peer)
    await store.put(keys.assignment(mesh_id, "n1", "cpu0", "g1"), host)
    await store.put(keys.placement(mesh_id, "big"), pb.PlacementStatus(model="big", placed=True))
    async with console(store, mesh_id) as http:
        status = await status_showing(http, '"peer"')
    (model,) = status["models"]
    assert (model["id"], model["state"], model["replicas"]) == ("big", "loading", 0)
    (placement,) = model["placements"]
    assert (placement["kind"], placement["group"], placement["context"]) == ("split", "g1", 4096)
    parts = [(m["role"], m["node"], m["layer_share"], m["state"]) for m in placement["members"]]
    assert parts == [("host", "n1", 0.6, "assigned"), ("peer", "n2", 0.4, "assigned")]


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
    async with console(store, mesh_id) as http:
        status = await status_showing(http, "passes the gate")
    (placement,) = status["models"][0]["placements"]
    assert placement["kind"] == "shards"
    first, second = placement["members"]
    assert first["node"] == "n1" and first["experts"] == 3
    assert first["expert_ids"] == [[0, 1, 2], [0, 1, 2]]
    assert first["quality"] == {
        "passed": True, "ppl_ratio": 1.02, "same_top": 0.97,
        "verdict": "perplexity x1.020 …: passes the gate", "measured_on": "n1",
    }  # fmt: skip
    assert second["node"] == "n2" and second["quality"] is None  # not measured yet


async def test_status_shows_the_demand_behind_a_model(store: EtcdStore, mesh_id: str) -> None:
    await store.put(
        keys.placement(mesh_id, "hot"),
        pb.PlacementStatus(
            model="hot", placed=True, replicas=2, mesh_replicas=3, requests_per_minute=240.5,
            demand="hot: 240.5 requests/min over 2 replicas: one more replica",
            next=["replica 1 more: every device that could take it serves it already"],
        ),
    )  # fmt: skip
    async with console(store, mesh_id) as http:
        status = await status_showing(http, "one more replica")
    (model,) = status["models"]
    assert model["demand"]["requests_per_minute"] == 240.5
    assert model["demand"]["mesh_replicas"] == 3 and "serves it already" in model["next"][0]


async def test_events_deliver_a_model_and_a_node_and_start_whole_again_after_a_reconnect(
    store: EtcdStore, mesh_id: str
) -> None:
    async with console(store, mesh_id) as http:
        for model in ("first", "second"):  # the second stream: a client that reconnected
            async with http.stream("GET", "/api/events") as events:
                lines = events.aiter_lines()
                opening = await next_status(lines)
                assert model not in [m["id"] for m in opening["models"]]
                assert opening["this_node"]["invite_token"] == ""  # never in a shared feed
                await store.put(
                    keys.placement(mesh_id, model), pb.PlacementStatus(model=model, placed=True)
                )
                changed = time.monotonic()
                while model not in [m["id"] for m in (await next_status(lines))["models"]]:
                    pass
                assert time.monotonic() - changed < 1.0
                joined = f"node-{model}"  # a node joins: its worker's record appears
                await store.put(keys.worker(mesh_id, joined, "cpu0"), worker(joined))
                changed = time.monotonic()
                while joined not in [n["id"] for n in (await next_status(lines))["nodes"]]:
                    pass
                assert time.monotonic() - changed < 1.0


async def next_status(lines: AsyncIterator[str]) -> dict:
    async for line in lines:
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))
    raise AssertionError("the event stream ended")


async def test_the_invite_is_shown_to_this_machine_only(store: EtcdStore, mesh_id: str) -> None:
    async with console(store, mesh_id, client="192.0.2.7") as http:
        refused = await http.get("/api/invite")
        status = (await http.get("/api/status")).json()
    assert refused.status_code == 403 and "own machine" in refused.json()["error"]["message"]
    assert status["this_node"]["invite_token"] == ""
    async with console(store, mesh_id) as http:
        shown = (await http.get("/api/invite")).json()
    assert shown["join"] == "mesh-llm serve --join mesh1.tok"


async def test_asking_for_a_model_pins_it_for_this_node_until_withdrawn(
    store: EtcdStore, mesh_id: str, tiny_model: Path, tmp_path: Path
) -> None:
    settings = RegistrySettings(
        mesh_id=mesh_id, node="n1", models_dir=str(tmp_path), cache_dir=str(tmp_path / "c")
    )
    async with running_registry(store, settings) as registry, console(store, mesh_id) as http:
        record = pb.ServiceRecord(
            kind="registry", instance="r1", node="n1", grpc_address=registry.address
        )
        await store.put(keys.service(mesh_id, "registry", "r1"), record)
        asked = await http.post("/api/models", json={"model": str(tiny_model)})
        assert asked.status_code == 202, asked.text
        assert asked.json() == {"model": tiny_model.stem, "state": "requested"}
        key = keys.demand_entry(mesh_id, tiny_model.stem, "n1", "console")
        pin = await store.get(key, pb.Demand)
        assert pin is not None and pin.pinned and pin.origin == "n1"
        unknown = await http.post("/api/models", json={"model": "no-such-model"})
        assert unknown.status_code == 404 and "no model named" in unknown.json()["error"]["message"]
        empty = await http.post("/api/models", json={"model": ""})
        assert empty.status_code == 400
        gone = await http.delete(f"/api/models/{tiny_model.stem}")
        assert gone.status_code == 200 and await store.get(key, pb.Demand) is None
        again = await http.delete(f"/api/models/{tiny_model.stem}")
        assert again.status_code == 404 and "has not asked for" in again.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/", "/static/console.js", "/static/console.css"])
async def test_the_page_is_served_from_the_package(
    store: EtcdStore, mesh_id: str, path: str
) -> None:
    async with console(store, mesh_id) as http:
        reply = await http.get(path)
    assert reply.status_code == 200 and len(reply.content) > 1000
    assert "http://" not in reply.text.replace("http://www.w3.org", "")  # nothing fetched
