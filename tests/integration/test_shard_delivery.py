"""Expert shards delivered by the registry that holds the model, over real gRPC with a real
etcd and llama.cpp's llama-perplexity: written and measured once (cached by expert set),
recorded for placement, refused when they fail the quality gate, and streamed to a node
without the file — resuming after the connection is cut midway, checked by SHA-256."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import RunningRegistry, running_registry
from test_shards import SHAPE

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import keys
from meshllm.core.clients import RegistryClient
from meshllm.core.digest import file_sha256
from meshllm.core.errors import InvalidRequest, NotFound, Refused, UpstreamError
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.shard_ids import shard_id
from meshllm.core.store import EtcdStore
from meshllm.registry.settings import RegistrySettings
from meshllm.worker.shard_copy import ShardSource, download, obtain_shard

pytestmark = pytest.mark.integration
MODEL = "tiny-moe"


def spec_of(*experts: int) -> pb.ShardSpec:
    layers = [list(experts)] * SHAPE.layers
    return pb.ShardSpec(
        shard_id=shard_id(MODEL, layers),
        expert_count=len(experts),
        layers=[pb.LayerExperts(experts=layer) for layer in layers],
    )


ROUTED = spec_of(0, 1, 2, 3, 4, 6)  # holds the experts the router always picks
UNROUTED = spec_of(2, 3, 4, 5, 6, 7)  # lacks experts 0 and 1


Registry = RunningRegistry


@pytest.fixture
async def registry(store: EtcdStore, mesh_id: str, tmp_path: Path) -> AsyncIterator[Registry]:
    settings = RegistrySettings(mesh_id=mesh_id, node="n1", cache_dir=str(tmp_path / "cache"))
    async with running_registry(store, settings) as running:
        await running.client.register(path=str(cached_model(SHAPE)), alias=MODEL)
        yield running


async def prepare(client: RegistryClient, spec: pb.ShardSpec) -> tuple[list[str], pb.ShardRecord]:
    stages, record = [], pb.ShardRecord()
    async for step in client.prepare_shard(MODEL, spec):
        stages.append(step.stage)
        if step.stage == "ready":
            record = step.record
    return stages, record


async def test_a_shard_is_written_measured_recorded_and_then_reused(
    registry: Registry, store: EtcdStore, mesh_id: str
) -> None:
    stages, record = await prepare(registry.client, ROUTED)
    assert {"writing", "hashing", "measuring", "ready"} <= set(stages)
    assert record.passed and record.same_top == 1.0 and record.node == "n1"
    assert abs(record.ppl_ratio - 1) < 1e-3, record.quality
    assert "passes the gate" in record.quality
    stored = await store.get(keys.shard(mesh_id, MODEL, ROUTED.shard_id), pb.ShardRecord)
    assert stored is not None and stored.sha256 == record.sha256 and stored.passed
    again, cached = await prepare(registry.client, ROUTED)
    assert again == ["ready"] and cached.sha256 == record.sha256  # nothing written twice


async def test_a_shard_that_fails_the_gate_is_recorded_and_never_handed_out(
    registry: Registry, store: EtcdStore, mesh_id: str
) -> None:
    with pytest.raises(Refused, match="fails the gate"):
        await prepare(registry.client, UNROUTED)
    stored = await store.get(keys.shard(mesh_id, MODEL, UNROUTED.shard_id), pb.ShardRecord)
    assert stored is not None and not stored.passed and stored.same_top < 0.6
    with pytest.raises(NotFound, match="not prepared"):
        async for _ in registry.client.read_shard(MODEL, UNROUTED.shard_id, 0):
            pass


async def test_bad_shard_requests_are_refused_with_the_reason(registry: Registry) -> None:
    forged = pb.ShardSpec()
    forged.CopyFrom(ROUTED)
    forged.shard_id = UNROUTED.shard_id
    with pytest.raises(InvalidRequest, match="does not match its experts"):
        await prepare(registry.client, forged)
    wrong_layers = spec_of(0, 1, 2, 3)
    del wrong_layers.layers[1:]
    wrong_layers.shard_id = shard_id(MODEL, [[0, 1, 2, 3]])
    with pytest.raises(InvalidRequest, match="layer"):
        await prepare(registry.client, wrong_layers)
    dense = await registry.client.register(path=str(cached_model(ModelShape())), alias="dense")
    with pytest.raises(InvalidRequest, match="not a mixture"):
        async for _ in registry.client.prepare_shard(dense.name, ROUTED):
            pass
    with pytest.raises(InvalidRequest, match="not a shard id"):
        async for _ in registry.client.read_shard(MODEL, "../../etc/passwd", 0):
            pass


class CuttingProxy:
    """A TCP proxy that drops the first connection after `cut_after` bytes from the server:
    a transfer broken midway. Later connections pass whole."""

    def __init__(self, target: str, cut_after: int) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.cut_after = cut_after
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.cut_after if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        pipes = [self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, limit)]
        with contextlib.suppress(OSError):
            await asyncio.gather(*pipes)
        for w in (writer, up_writer):
            w.close()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int | None
    ) -> None:
        sent = 0
        while data := await reader.read(1 << 16):
            if limit is not None and sent + len(data) > limit:
                writer.transport.abort()
                raise OSError("cut")
            writer.write(data)
            await writer.drain()
            sent += len(data)
        writer.close()


async def test_a_node_without_the_file_gets_its_shard_resumed_after_a_cut(
    registry: Registry, store: EtcdStore, mesh_id: str, tmp_path: Path
) -> None:
    _, record = await prepare(registry.client, ROUTED)
    copied: list[int] = []
    proxy = CuttingProxy(registry.address, cut_after=record.size_bytes // 3)
    async with proxy as address, RegistryClient(address) as through_cut:
        dest = tmp_path / "n2" / "shard.gguf"
        await download(through_cut, MODEL, record, dest, lambda s, done, t: copied.append(done))
    assert file_sha256(dest) == record.sha256
    assert proxy.connections >= 2  # the first transfer was cut …
    assert copied == sorted(copied) and copied[-1] == record.size_bytes  # … and resumed, not
    # started over


async def test_a_corrupt_partial_copy_is_refused_by_its_checksum(
    registry: Registry, tmp_path: Path
) -> None:
    _, record = await prepare(registry.client, ROUTED)
    dest = tmp_path / "n2" / "shard.gguf"
    dest.parent.mkdir()
    Path(f"{dest}.part").write_bytes(b"\0" * 4096)  # a partial copy that is not the shard's
    with pytest.raises(UpstreamError, match="checksum"):
        await download(registry.client, MODEL, record, dest, lambda *_: None)
    assert not dest.exists() and not Path(f"{dest}.part").exists()
    await download(registry.client, MODEL, record, dest, lambda *_: None)  # clean: whole again
    assert file_sha256(dest) == record.sha256


async def test_a_worker_finds_the_registry_that_holds_the_file(
    registry: Registry, store: EtcdStore, mesh_id: str, tmp_path: Path
) -> None:
    await store.put(
        keys.service(mesh_id, "registry", "r1"),
        pb.ServiceRecord(kind="registry", instance="r1", node="n1", grpc_address=registry.address),
    )
    here = ShardSource(store, mesh_id, "n1", None)
    local = await obtain_shard(here, MODEL, ROUTED, tmp_path / "n1", lambda *_: None)
    assert local.parent.parent == tmp_path / "cache" / "shards"  # used where it lies
    there = ShardSource(store, mesh_id, "n2", None)
    copied = await obtain_shard(there, MODEL, ROUTED, tmp_path / "n2", lambda *_: None)
    assert copied.is_relative_to(tmp_path / "n2")
    assert file_sha256(copied) == file_sha256(local)
    with pytest.raises(Refused):
        await obtain_shard(there, MODEL, UNROUTED, tmp_path / "n2", lambda *_: None)
