from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from meshllm.core import keys
from meshllm.core.clients import model_reference
from meshllm.core.errors import Forbidden, InvalidRequest, MeshError, NotFound
from meshllm.core.grpc import peer_identity
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.proto.mesh.v1 import registry_pb2 as rpb
from meshllm.core.proto.mesh.v1 import registry_pb2_grpc
from meshllm.core.store import EtcdStore, LeaseKeeper

from . import catalog, hub, model_catalog, sources
from .downloads import Manifest
from .file_reads import chunks_of
from .gguf_facts import GgufError, GgufFacts, read_facts
from .settings import RegistrySettings
from .shard_maker import ShardMaker

logger = logging.getLogger(__name__)


def facts_message(facts: GgufFacts) -> pb.ModelFacts:
    return pb.ModelFacts(
        architecture=facts.architecture,
        display_name=facts.name,
        file_size_bytes=facts.file_size,
        block_count=facts.block_count,
        context_length=facts.context_length,
        embedding_length=facts.embedding_length,
        head_count=facts.head_count,
        head_count_kv=facts.head_count_kv,
        feed_forward_length=facts.feed_forward_length,
        expert_count=facts.expert_count,
        expert_used_count=facts.expert_used_count,
        vocab_size=facts.vocab_size,
        file_type=facts.file_type,
        has_chat_template=facts.has_chat_template,
        vision=facts.vision,
        audio=facts.audio,
        kv_bytes_per_token=facts.kv_cache_bytes(1),
        head_dim_k=facts.head_dim_k,
        head_dim_v=facts.head_dim_v,
        expert_tensor_bytes=facts.expert_tensor_bytes,
    )


FETCHABLE = (pb.MODEL_SOURCE_KIND_PYPI, pb.MODEL_SOURCE_KIND_HUGGINGFACE, pb.MODEL_SOURCE_KIND_URL)


def _same_registration(before: pb.CatalogEntry, now: pb.CatalogEntry, path: Path) -> bool:
    """The same file, unchanged since, registered again under the same name (a node's
    `--model` is registered by serve and pinned by its worker)."""
    same = before.source == now.source and before.facts == now.facts
    same = same and before.projector == now.projector and before.draft == now.draft
    return same and before.aliases == now.aliases and path.stat().st_mtime < before.registered_unix


def check_draft(model: pb.CatalogEntry, draft: pb.CatalogEntry) -> None:
    """A draft proposes tokens its model checks: it must speak the same vocabulary, and be
    smaller (a draft as big as its model only slows it down)."""
    theirs, ours = draft.facts, model.facts
    if theirs.vocab_size != ours.vocab_size:
        raise InvalidRequest(
            f"{draft.name} cannot draft for {model.name}: its vocabulary has "
            f"{theirs.vocab_size} tokens, the model's {ours.vocab_size}; a draft must share "
            "its model's vocabulary (a smaller model of the same family)",
            param="draft",
        )
    if theirs.file_size_bytes >= ours.file_size_bytes:
        raise InvalidRequest(
            f"{draft.name} cannot draft for {model.name}: it is not smaller than the model "
            f"({theirs.file_size_bytes / 1e6:.0f} MB against {ours.file_size_bytes / 1e6:.0f} "
            "MB)",
            param="draft",
        )


async def inspect(path: Path) -> pb.ModelFacts:
    try:
        facts = await asyncio.to_thread(read_facts, path)
    except GgufError as exc:
        raise InvalidRequest(str(exc), param="path") from exc
    return facts_message(facts)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        settings: RegistrySettings,
        store: EtcdStore,
        lease: LeaseKeeper,
        shards: ShardMaker | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._lease = lease
        self._shards = shards or ShardMaker(settings, store)
        self._models_dir = Path(settings.models_dir).expanduser()
        self._cache_dir = Path(settings.cache_dir).expanduser()
        self._manifest = Manifest(self._cache_dir)

    def _touch(self, path: Path) -> None:
        """The mesh uses this model file now (`mesh-llm models installed` shows when)."""
        for part in hub.parts_of(path):
            self._manifest.touch(part)

    async def RegisterModel(
        self, request: rpb.RegisterModelRequest, context: grpc.aio.ServicerContext
    ) -> rpb.RegisterModelResponse:
        draft = None
        value = model_catalog.draft_for(request.name, request.draft)
        if request.draft and not value:
            raise InvalidRequest(
                f"{request.name or request.path} has no draft in the catalog: name one",
                param="draft",
            )
        if value:  # registered first, as a model of its own
            ref = rpb.RegisterModelRequest(**model_reference(value))
            try:
                draft = await self._register(ref, context, None)
            except MeshError as exc:
                raise type(exc)(f"draft {value}: {exc.message}", param="draft") from exc
        return rpb.RegisterModelResponse(entry=await self._register(request, context, draft))

    async def _register(
        self,
        request: rpb.RegisterModelRequest,
        context: grpc.aio.ServicerContext,
        draft: pb.CatalogEntry | None,
    ) -> pb.CatalogEntry:
        if bool(request.path) == bool(request.name):
            raise InvalidRequest("give exactly one of a GGUF path and a model name")
        if request.path:
            self._check_own_node(context)
            path = Path(request.path).expanduser().resolve()
            source = pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_PATH, path=str(path))
            name = request.alias or catalog.name_from_path(path)
        else:
            resolved = await asyncio.to_thread(
                sources.resolve, request.name, self._models_dir, self._cache_dir
            )
            name = request.alias or resolved.name
            source = resolved.source
            path = await asyncio.to_thread(sources.fetch, resolved, self._cache_dir)
            source.path = str(path)
        catalog.check_name(name)
        await asyncio.to_thread(self._touch, path)
        source.node = self._settings.node
        if request.mmproj:  # it may be a path: only this node's own services name one
            self._check_own_node(context)
        projector = await asyncio.to_thread(
            sources.projector, request.mmproj, request.name, source, self._cache_dir
        )
        entry = pb.CatalogEntry(
            name=name,
            source=source,
            facts=await inspect(path),
            registered_unix=int(time.time()),
            aliases=catalog.aliases_of(name),
            projector=projector,
            draft=draft.name if draft is not None else "",
        )
        if draft is not None:
            check_draft(entry, draft)
        mesh = self._settings.mesh_id
        before = await self._store.get(keys.catalog_entry(mesh, name), pb.CatalogEntry)
        if before is not None and _same_registration(before, entry, path):
            entry.registered_unix = before.registered_unix  # nothing to rank or measure again
        else:
            await self._store.put(keys.catalog_entry(mesh, name), entry)
        await self._lease.publish(
            keys.file_entry(mesh, name, self._settings.node),
            pb.ModelFile(
                model=name,
                node=self._settings.node,
                path=str(path),
                size_bytes=entry.facts.file_size_bytes,
            ),
        )
        logger.info(
            "registered %s from %s (%s, %d layers, %.1f MB)",
            name,
            path,
            entry.facts.architecture,
            entry.facts.block_count,
            entry.facts.file_size_bytes / 1e6,
        )
        return entry

    async def InspectModel(
        self, request: rpb.InspectModelRequest, context: grpc.aio.ServicerContext
    ) -> rpb.InspectModelResponse:
        path = Path(request.path).expanduser().resolve()
        if not await self._may_read(path):
            raise Forbidden(
                "this registry reads only files under its model folders or registered on its node",
                param="path",
            )
        return rpb.InspectModelResponse(facts=await inspect(path))

    def _check_own_node(self, context: grpc.aio.ServicerContext) -> None:
        """A file is registered by path only from its own node: no other node may make this
        registry open a path of its choosing."""
        peer = peer_identity(context)
        if peer is not None and peer.node != self._settings.node:
            raise Forbidden(
                f"only node {self._settings.node} may register its files by path; "
                "other nodes register models by name",
                param="path",
            )

    async def _may_read(self, path: Path) -> bool:
        folders = (self._models_dir.resolve(), self._cache_dir.resolve())
        if any(path.is_relative_to(folder) for folder in folders):
            return True
        files, _ = await self._store.get_prefix(keys.files(self._settings.mesh_id), pb.ModelFile)
        return any(f.node == self._settings.node and Path(f.path) == path for f in files.values())

    async def ListModels(
        self, request: rpb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListModelsResponse:
        entries, _ = await self._store.get_prefix(
            keys.catalog(self._settings.mesh_id), pb.CatalogEntry
        )
        return rpb.ListModelsResponse(entries=sorted(entries.values(), key=lambda e: e.name))

    async def LocateModel(
        self, request: rpb.LocateModelRequest, context: grpc.aio.ServicerContext
    ) -> rpb.LocateModelResponse:
        mesh = self._settings.mesh_id
        entry = await self._store.get(keys.catalog_entry(mesh, request.model), pb.CatalogEntry)
        if entry is None:
            raise NotFound(f"model '{request.model}' is not in the catalog")
        node = request.node or self._settings.node
        held = await self._store.get(keys.file_entry(mesh, request.model, node), pb.ModelFile)
        if held is not None and Path(held.path).is_file():
            path = Path(held.path)
        elif entry.source.kind in FETCHABLE and node == self._settings.node:
            path = await asyncio.to_thread(
                sources.fetch_source, entry.source, request.model, self._cache_dir
            )
        else:
            raise NotFound(f"the file of '{request.model}' is not on node {node}")
        await asyncio.to_thread(self._touch, path)
        projector = ""
        if entry.HasField("projector"):
            found = await asyncio.to_thread(
                sources.projector_file, entry.projector, request.model, self._cache_dir
            )
            projector = str(found)
        return rpb.LocateModelResponse(path=str(path), facts=entry.facts, projector_path=projector)

    async def PrepareShard(
        self, request: rpb.PrepareShardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.ShardProgress]:
        mesh = self._settings.mesh_id
        entry = await self._store.get(keys.catalog_entry(mesh, request.model), pb.CatalogEntry)
        if entry is None:
            raise NotFound(f"model '{request.model}' is not in the catalog")
        if entry.facts.expert_count <= 0:
            raise InvalidRequest(f"'{request.model}' is not a mixture of experts", param="model")
        node = self._settings.node
        held = await self._store.get(keys.file_entry(mesh, request.model, node), pb.ModelFile)
        if held is None or not Path(held.path).is_file():
            raise NotFound(f"the file of '{request.model}' is not on node {node}")
        async for progress in self._shards.prepare(request.model, request.spec, Path(held.path)):
            yield progress

    async def ReadShard(
        self, request: rpb.ReadShardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.ShardChunk]:
        async for chunk in self._shards.read(request.model, request.shard_id, request.offset):
            yield chunk

    async def ReadModel(
        self, request: rpb.ReadModelRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.ModelChunk]:
        node = self._settings.node
        key = keys.file_entry(self._settings.mesh_id, request.model, node)
        held = await self._store.get(key, pb.ModelFile)
        try:
            stat = await asyncio.to_thread(os.stat, held.path) if held else None
        except OSError:
            stat = None
        if held is None or stat is None:
            raise NotFound(f"the file of '{request.model}' is not on node {node}")
        size, version = stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}"
        what = f"the file of '{request.model}'"
        async for at, data in chunks_of(Path(held.path), request.offset, size, what):
            yield rpb.ModelChunk(offset=at, data=data, size_bytes=size, version=version)
        yield rpb.ModelChunk(offset=size, size_bytes=size, version=version)
