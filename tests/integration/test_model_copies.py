"""A model registered from a local file on one node, copied by a node without it: streamed by
the registry that holds it (ReadModel, over real gRPC with a real etcd), resumed after the
connection is cut midway, reused while the source is unchanged, started over when it
changed, refused for a model the registry does not hold, and, once finished, offered to the
mesh by the registry beside the worker that made it."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import RunningRegistry, running_registry
from test_shard_delivery import CuttingProxy

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import keys
from meshllm.core.clients import RegistryClient
from meshllm.core.errors import InvalidRequest, NotFound, UpstreamError
from meshllm.core.model_copies import copy_path
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, LeaseKeeper
from meshllm.registry.copies import LocalCopies
from meshllm.registry.settings import RegistrySettings
from meshllm.worker.model_copy import copy_model, obtain_model_copy
from meshllm.worker.shard_copy import ShardSource

pytestmark = pytest.mark.integration
MODEL = "tiny-file"


@pytest.fixture
async def registry(
    store: EtcdStore, mesh_id: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningRegistry, Path]]:
    source = tmp_path / "n1" / "tiny.gguf"
    source.parent.mkdir()
    shutil.copyfile(cached_model(ModelShape()), source)
    settings = RegistrySettings(mesh_id=mesh_id, node="n1", cache_dir=str(tmp_path / "cache"))
    async with running_registry(store, settings) as running:
        await running.client.register(path=str(source), alias=MODEL)
        await store.put(
            keys.service(mesh_id, "registry", "r1"),
            pb.ServiceRecord(
                kind="registry", instance="r1", node="n1", grpc_address=running.address
            ),
        )
        yield running, source


async def test_a_copy_resumes_after_the_connection_is_cut(
    registry: tuple[RunningRegistry, Path], tmp_path: Path
) -> None:
    running, source = registry
    size = source.stat().st_size
    copied: list[int] = []
    proxy = CuttingProxy(running.address, cut_after=size // 3)
    async with proxy as address, RegistryClient(address) as through_cut:
        dest = tmp_path / "n2" / "model.gguf"
        await copy_model(through_cut, MODEL, dest, lambda s, done, t: copied.append(done))
    assert dest.read_bytes() == source.read_bytes()
    assert proxy.connections >= 2  # the first transfer was cut …
    assert copied == sorted(copied) and copied[-1] == size  # … and resumed, not started over
    assert not Path(f"{dest}.part").exists()


async def test_a_copy_is_reused_until_its_source_changes(
    registry: tuple[RunningRegistry, Path], store: EtcdStore, mesh_id: str, tmp_path: Path
) -> None:
    _, source = registry
    there = ShardSource(store, mesh_id, "n2", None)
    transfers: list[int] = []
    progress = lambda stage, done, total: transfers.append(done)  # noqa: E731
    first = await obtain_model_copy(there, MODEL, tmp_path / "n2", progress)
    assert first.is_relative_to(tmp_path / "n2") and first.read_bytes() == source.read_bytes()
    transfers.clear()
    assert await obtain_model_copy(there, MODEL, tmp_path / "n2", progress) == first
    assert transfers == []  # the same file: nothing copied again
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed
    await obtain_model_copy(there, MODEL, tmp_path / "n2", progress)
    assert transfers and transfers[-1] == source.stat().st_size


async def test_a_partial_copy_of_another_version_starts_over(
    registry: tuple[RunningRegistry, Path], tmp_path: Path
) -> None:
    running, source = registry
    dest = tmp_path / "n2" / "model.gguf"
    dest.parent.mkdir()
    Path(f"{dest}.part").write_bytes(b"\0" * 4096)  # left from a file that is gone
    Path(f"{dest}.part.version").write_text("4096:1")
    await copy_model(running.client, MODEL, dest, lambda *_: None)
    assert dest.read_bytes() == source.read_bytes()


async def test_a_source_that_is_no_longer_a_gguf_is_refused_and_nothing_is_kept(
    registry: tuple[RunningRegistry, Path], tmp_path: Path
) -> None:
    running, source = registry
    source.write_bytes(b"not a model any more" * 1000)  # replaced after it was registered
    dest = tmp_path / "n2" / "model.gguf"
    with pytest.raises(UpstreamError, match="is not a whole GGUF"):
        await copy_model(running.client, MODEL, dest, lambda *_: None)
    assert not dest.exists() and not Path(f"{dest}.part").exists()


async def test_what_the_registry_does_not_hold_is_refused(
    registry: tuple[RunningRegistry, Path],
) -> None:
    running, source = registry
    with pytest.raises(NotFound, match="not on node n1"):
        async for _ in running.client.read_model("no-such-model", 0):
            pass
    with pytest.raises(InvalidRequest, match="past the end"):
        async for _ in running.client.read_model(MODEL, source.stat().st_size + 1):
            pass
    chunks = [c async for c in running.client.read_model(MODEL, source.stat().st_size)]
    assert [(c.offset, c.data) for c in chunks] == [(source.stat().st_size, b"")]


async def test_a_finished_copy_is_offered_to_the_mesh_by_the_registry_beside_it(
    registry: tuple[RunningRegistry, Path], store: EtcdStore, mesh_id: str, tmp_path: Path
) -> None:
    """n2's registry offers the copy n2's worker made, so the model outlives its first node."""
    _, source = registry
    copies = tmp_path / "n2" / "copies"
    settings = RegistrySettings(
        mesh_id=mesh_id, node="n2", cache_dir=str(tmp_path / "n2" / "cache"),
        models_dir=str(tmp_path / "n2" / "models"), copies_dir=str(copies), copies_rescan_s=0.2,
    )  # fmt: skip
    lease = LeaseKeeper(store, ttl_s=5)
    await lease.start()
    offers = LocalCopies(settings, store, lease)
    tasks = [asyncio.create_task(part.run()) for part in (offers.catalog, offers)]
    key = keys.file_entry(mesh_id, MODEL, "n2")
    try:
        await asyncio.sleep(1)
        assert await store.get(key, pb.ModelFile) is None  # no copy yet: nothing offered
        copies.mkdir(parents=True)
        partial = copy_path(copies, MODEL)
        partial.parent.mkdir()
        partial.write_bytes(source.read_bytes()[:1000])  # a copy cut short is not offered
        await asyncio.sleep(1)
        assert await store.get(key, pb.ModelFile) is None
        partial.unlink()
        there = ShardSource(store, mesh_id, "n2", None)
        made = await obtain_model_copy(there, MODEL, copies, lambda *_: None)
        offered = await eventually_get(store, key)
        assert offered.path == str(made) and offered.size_bytes == source.stat().st_size
    finally:
        await offers.stop()
        await offers.catalog.stop()
        await asyncio.gather(*tasks)
        await lease.stop()


async def eventually_get(store: EtcdStore, key: str) -> pb.ModelFile:
    for _ in range(50):
        found = await store.get(key, pb.ModelFile)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing under {key}")
