"""Typed clients for the services' gRPC APIs. Status codes come back as MeshError; addresses
are found in the store (/services/<kind>/), preferring one on the caller's node."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator

from . import keys
from .errors import Unavailable
from .grpc import make_channel, map_rpc_errors
from .pki import Credentials
from .proto.mesh.v1 import common_pb2 as pb
from .proto.mesh.v1 import registry_pb2 as rpb
from .proto.mesh.v1 import registry_pb2_grpc, scheduler_pb2_grpc
from .proto.mesh.v1 import scheduler_pb2 as spb
from .store import EtcdStore

PREPARE_TIMEOUT_S = 3 * 3600.0  # writing and measuring a large shard, or streaming it


async def find_service(
    store: EtcdStore, mesh: str, kind: str, node: str = "", *, only_node: bool = False
) -> str:
    """The address of a `kind` service, on `node` when there is one there (and only there
    with `only_node`)."""
    records, _ = await store.get_prefix(keys.services(mesh, kind), pb.ServiceRecord)
    candidates = [r for r in records.values() if r.grpc_address]
    local = [r for r in candidates if r.node == node]
    if only_node and not local:
        raise Unavailable(f"no {kind} service is running on node {node}")
    if not candidates:
        raise Unavailable(f"no {kind} service is running in mesh '{mesh}'")
    return random.choice(local or candidates).grpc_address


class RegistryClient:
    def __init__(
        self, address: str, credentials: Credentials | None = None, timeout_s: float = 600.0
    ) -> None:
        self._channel = make_channel(address, credentials)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._timeout_s = timeout_s

    @classmethod
    async def discover(
        cls,
        store: EtcdStore,
        mesh: str,
        node: str,
        credentials: Credentials | None = None,
        *,
        only_node: bool = False,
    ) -> RegistryClient:
        address = await find_service(store, mesh, "registry", node, only_node=only_node)
        return cls(address, credentials)

    async def register(
        self, *, path: str = "", name: str = "", alias: str = "", mmproj: str = "", draft: str = ""
    ) -> pb.CatalogEntry:
        with map_rpc_errors("RegisterModel"):
            reply = await self._stub.RegisterModel(
                rpb.RegisterModelRequest(
                    path=path, name=name, alias=alias, mmproj=mmproj, draft=draft
                ),
                timeout=self._timeout_s,
            )
        return reply.entry

    async def locate(self, model: str, node: str) -> rpb.LocateModelResponse:
        with map_rpc_errors("LocateModel"):
            return await self._stub.LocateModel(
                rpb.LocateModelRequest(model=model, node=node), timeout=30
            )

    async def prepare_shard(
        self, model: str, spec: pb.ShardSpec
    ) -> AsyncIterator[rpb.ShardProgress]:
        """Progress of writing and measuring the shard; the last message carries its record.
        Refused when the shard fails the quality gate."""
        request = rpb.PrepareShardRequest(model=model, spec=spec)
        with map_rpc_errors("PrepareShard"):
            async for progress in self._stub.PrepareShard(request, timeout=PREPARE_TIMEOUT_S):
                yield progress

    async def read_shard(
        self, model: str, shard_id: str, offset: int
    ) -> AsyncIterator[rpb.ShardChunk]:
        request = rpb.ReadShardRequest(model=model, shard_id=shard_id, offset=offset)
        with map_rpc_errors("ReadShard"):
            async for chunk in self._stub.ReadShard(request, timeout=PREPARE_TIMEOUT_S):
                yield chunk

    async def read_model(self, model: str, offset: int) -> AsyncIterator[rpb.ModelChunk]:
        request = rpb.ReadModelRequest(model=model, offset=offset)
        with map_rpc_errors("ReadModel"):
            async for chunk in self._stub.ReadModel(request, timeout=PREPARE_TIMEOUT_S):
                yield chunk

    async def inspect(self, path: str) -> pb.ModelFacts:
        with map_rpc_errors("InspectModel"):
            reply = await self._stub.InspectModel(rpb.InspectModelRequest(path=path), timeout=60)
        return reply.facts

    async def list(self) -> list[pb.CatalogEntry]:
        with map_rpc_errors("ListModels"):
            reply = await self._stub.ListModels(rpb.ListModelsRequest(), timeout=30)
        return list(reply.entries)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def model_reference(value: str) -> dict[str, str]:
    """A `--model` value is a GGUF path when it names a file or is written as a path
    (`./m.gguf`, `/models/m.gguf`, `~/m.gguf`, `m.gguf`), else a name for the registry to
    resolve: a model it holds, a built-in, a catalog name or a Hugging Face reference
    (`org/repo/file.gguf`)."""
    as_path = value.startswith(("/", "./", "../", "~")) or (
        value.endswith(".gguf") and "/" not in value
    )
    if as_path or os.path.isfile(value):
        return {"path": value}
    return {"name": value}


class SchedulerClient:
    def __init__(self, address: str, credentials: Credentials | None = None) -> None:
        self._channel = make_channel(address, credentials)
        self._stub = scheduler_pb2_grpc.SchedulerServiceStub(self._channel)

    async def plan(self) -> spb.GetPlanResponse:
        with map_rpc_errors("GetPlan"):
            return await self._stub.GetPlan(spb.GetPlanRequest(), timeout=10)

    async def explain(self, model: str) -> spb.ExplainPlacementResponse:
        with map_rpc_errors("ExplainPlacement"):
            return await self._stub.ExplainPlacement(
                spb.ExplainPlacementRequest(model=model), timeout=10
            )

    async def close(self) -> None:
        await self._channel.close()
