"""EtcdStore, LeaseKeeper and PrefixCache against a real etcd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshllm.cli.etcd import EtcdServer
from meshllm.core import keys
from meshllm.core.errors import Unavailable
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, Fence, FenceLost, LeaseKeeper, PrefixCache

pytestmark = pytest.mark.integration


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_put_get_prefix_delete(store: EtcdStore, mesh_id: str) -> None:
    a = keys.endpoint(mesh_id, "m", "i1")
    await store.put(a, pb.Endpoint(model="m", instance_id="i1"))
    await store.put(keys.endpoint(mesh_id, "m", "i2"), pb.Endpoint(model="m", instance_id="i2"))
    got = await store.get(a, pb.Endpoint)
    assert got is not None and got.instance_id == "i1"
    items, revision = await store.get_prefix(keys.endpoints(mesh_id), pb.Endpoint)
    assert sorted(e.instance_id for e in items.values()) == ["i1", "i2"] and revision > 0
    assert await store.delete(a)
    assert await store.get(a, pb.Endpoint) is None
    assert await store.delete_prefix(keys.endpoints(mesh_id)) == 1


async def test_undecodable_values_are_skipped(store: EtcdStore, mesh_id: str) -> None:
    await store.put(keys.catalog_entry(mesh_id, "bad"), b"\xff\xff not protobuf")
    await store.put(keys.catalog_entry(mesh_id, "good"), pb.CatalogEntry(name="good"))
    items, _ = await store.get_prefix(keys.catalog(mesh_id), pb.CatalogEntry)
    assert [e.name for e in items.values()] == ["good"]


async def test_put_if_absent(store: EtcdStore, mesh_id: str) -> None:
    key = keys.leader(mesh_id, "scheduler")
    assert await store.put_if_absent(key, b"one")
    assert not await store.put_if_absent(key, b"two")
    assert (await store.get_raw(key)) == (b"one", 0)


async def test_fenced_writes_land_only_while_the_fence_key_is_ours(
    store: EtcdStore, mesh_id: str
) -> None:
    leader = keys.leader(mesh_id, "scheduler")
    lease = await store.grant_lease(30)
    assert await store.put_if_absent(leader, b"me", lease=lease)
    held = await store.holder(leader)
    assert held is not None and held[:2] == (b"me", lease)
    fence = Fence(leader, held[2])
    target = keys.placement(mesh_id, "m")
    await store.put_fenced(fence, target, pb.PlacementStatus(model="m"))
    assert await store.get(target, pb.PlacementStatus) == pb.PlacementStatus(model="m")

    await store.revoke_lease(lease)  # the lead is lost: the key went with the lease
    with pytest.raises(FenceLost):
        await store.put_fenced(fence, target, pb.PlacementStatus(model="m", placed=True))
    with pytest.raises(FenceLost):
        await store.delete_fenced(fence, target)
    assert await store.put_if_absent(leader, b"someone else")  # the same key, created anew
    with pytest.raises(FenceLost):
        await store.put_fenced(fence, target, pb.PlacementStatus(model="m", placed=True))
    assert await store.get(target, pb.PlacementStatus) == pb.PlacementStatus(model="m")


async def test_leased_keys_vanish_after_the_ttl(store: EtcdStore, mesh_id: str) -> None:
    key = keys.worker(mesh_id, "n", "w")
    lease = await store.grant_lease(2)
    await store.put(key, pb.WorkerRecord(node="n"), lease=lease)
    assert await store.get(key, pb.WorkerRecord) is not None
    started = time.monotonic()
    while await store.get(key, pb.WorkerRecord) is not None:
        assert time.monotonic() - started < 5, "leased key outlived its TTL"
        await asyncio.sleep(0.1)
    assert time.monotonic() - started >= 1.0


async def test_lease_keeper_keeps_keys_alive_and_revokes_on_stop(
    store: EtcdStore, mesh_id: str
) -> None:
    keeper = LeaseKeeper(store, ttl_s=1)
    await keeper.start()
    task = asyncio.create_task(keeper.run())
    key = keys.service(mesh_id, "registry", "r1")
    await keeper.publish(key, pb.ServiceRecord(kind="registry"))
    await asyncio.sleep(2.5)  # well past the TTL: only keepalives keep it
    assert await store.get(key, pb.ServiceRecord) is not None
    await keeper.stop()
    await task
    assert await store.get(key, pb.ServiceRecord) is None  # revoked at once, no TTL wait


async def test_lease_keeper_republishes_after_losing_its_lease(
    store: EtcdStore, mesh_id: str
) -> None:
    keeper = LeaseKeeper(store, ttl_s=1)
    old = await keeper.start()
    renewed: list[int] = []

    async def hook(lease_id: int) -> None:
        renewed.append(lease_id)

    keeper.on_new_lease.append(hook)
    key = keys.service(mesh_id, "gateway", "g1")
    await keeper.publish(key, pb.ServiceRecord(kind="gateway"))
    await store.revoke_lease(old)  # as if etcd had expired it while we were cut off
    assert await store.get(key, pb.ServiceRecord) is None
    task = asyncio.create_task(keeper.run())
    try:
        await wait_for(lambda: bool(renewed), timeout=5)
        assert renewed == [keeper.lease_id] and keeper.lease_id != old
        assert (await store.get_raw(key))[1] == keeper.lease_id  # type: ignore[index]
    finally:
        await keeper.stop()
        await task


async def test_prefix_cache_follows_puts_and_deletes(store: EtcdStore, mesh_id: str) -> None:
    cache = PrefixCache(store, keys.endpoints(mesh_id), pb.Endpoint)
    await store.put(keys.endpoint(mesh_id, "m", "before"), pb.Endpoint(instance_id="before"))
    changes: list[int] = []
    cache.listeners.append(lambda: changes.append(len(cache.items)))
    task = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.ready.wait(), 5)
        assert [e.instance_id for e in cache.items.values()] == ["before"]
        for i in range(20):
            await store.put(keys.endpoint(mesh_id, "m", f"i{i}"), pb.Endpoint(instance_id=f"i{i}"))
        await wait_for(lambda: len(cache.items) == 21)
        await store.delete(keys.endpoint(mesh_id, "m", "before"))
        await wait_for(lambda: "before" not in {e.instance_id for e in cache.items.values()})
        assert changes[-1] == 20
    finally:
        await cache.stop()
        await task
    assert task.done() and not task.cancelled()


async def test_many_caches_stopped_while_their_watches_are_made_all_stop(
    store: EtcdStore, mesh_id: str
) -> None:
    """Caches stopped right after they loaded, while their watches are still being created
    one by one on the shared client, each stop at once (aetcd could leave one "cancelling"
    forever, holding up a service's shutdown)."""
    for round_ in range(3):
        caches = [
            PrefixCache(store, keys.workers(mesh_id, f"n{round_}-{i}"), pb.WorkerRecord)
            for i in range(12)
        ]
        tasks = [asyncio.create_task(c.run()) for c in caches]
        await asyncio.gather(*(c.ready.wait() for c in caches))
        for cache in caches:
            await cache.stop()
        _, pending = await asyncio.wait(tasks, timeout=5)
        assert not pending, f"round {round_}: {len(pending)} caches did not stop"


async def test_watch_resumes_across_an_etcd_restart(tmp_path: Path, mesh_id: str) -> None:
    """Kill etcd under a running watch, write while the cache is cut off, restart etcd:
    the cache catches up without losing an event."""
    server = EtcdServer(tmp_path / "etcd")
    await server.start()
    try:
        async with (
            EtcdStore.connect([server.endpoint]) as store,
            EtcdStore.connect([server.endpoint]) as writer,
        ):
            cache = PrefixCache(store, keys.endpoints(mesh_id), pb.Endpoint)
            task = asyncio.create_task(cache.run())
            await asyncio.wait_for(cache.ready.wait(), 5)
            await writer.put(keys.endpoint(mesh_id, "m", "a"), pb.Endpoint(instance_id="a"))
            await wait_for(lambda: len(cache.items) == 1)
            await server.process.stop(5)
            await server.start()  # same data dir and ports
            await writer.put(keys.endpoint(mesh_id, "m", "b"), pb.Endpoint(instance_id="b"))
            await wait_for(lambda: len(cache.items) == 2, timeout=15)
            await cache.stop()
            await task
    finally:
        await server.stop()


async def test_unreachable_etcd_is_a_clear_error() -> None:
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1 is not reachable"):
        async with EtcdStore.connect(["127.0.0.1:1"], wait_s=0.5):
            pass
