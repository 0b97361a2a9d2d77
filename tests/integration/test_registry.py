"""The registry over real gRPC with a real etcd: files are inspected, bad ones refused with a
message naming the file and the problem."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import eventually, running_registry
from test_shards import SHAPE

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import keys
from meshllm.core.clients import RegistryClient
from meshllm.core.errors import Forbidden, InvalidRequest, NotFound
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, PrefixCache
from meshllm.registry.ranker import ExpertRanker
from meshllm.registry.settings import RegistrySettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def registry(store: EtcdStore, mesh_id: str, tmp_path: Path) -> AsyncIterator[RegistryClient]:
    settings = RegistrySettings(
        mesh_id=mesh_id,
        node="n1",
        models_dir=str(tmp_path / "models"),
        cache_dir=str(tmp_path / "cache"),
    )
    async with running_registry(store, settings) as running:
        yield running.client


async def test_register_a_gguf_path(
    registry: RegistryClient, store: EtcdStore, mesh_id: str, tiny_model: Path
) -> None:
    entry = await registry.register(path=str(tiny_model))
    assert entry.name == tiny_model.stem
    assert entry.facts.architecture == "llama" and entry.facts.block_count == 4
    # K and V, 4 layers, 2 KV heads of 128/4 = 32 dims, 2 bytes (f16)
    assert entry.facts.kv_bytes_per_token == 2 * 4 * (2 * 32) * 2
    assert entry.source.kind == pb.MODEL_SOURCE_KIND_PATH and entry.source.node == "n1"
    stored = await store.get(keys.catalog_entry(mesh_id, entry.name), pb.CatalogEntry)
    assert stored == entry
    located = await registry.locate(entry.name, "n1")
    assert located.path == str(tiny_model.resolve())
    held = await store.get(keys.file_entry(mesh_id, entry.name, "n1"), pb.ModelFile)
    assert held is not None and held.path == located.path
    with pytest.raises(NotFound, match="not on node n2"):
        await registry.locate(entry.name, "n2")


async def test_register_by_name_from_the_model_directory(
    registry: RegistryClient, tiny_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir(exist_ok=True)
    shutil.copy(tiny_model, tmp_path / "models" / "my-model.gguf")
    entry = await registry.register(name="my-model")
    assert entry.name == "my-model" and entry.source.path.endswith("models/my-model.gguf")


async def test_alias(registry: RegistryClient, tiny_model: Path) -> None:
    assert (await registry.register(path=str(tiny_model), alias="tiny")).name == "tiny"


async def test_text_file_is_refused(registry: RegistryClient, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello world, not a model\n")
    with pytest.raises(InvalidRequest, match="is not a GGUF file") as caught:
        await registry.register(path=str(text))
    assert str(text) in caught.value.message


async def test_truncated_gguf_is_refused(
    registry: RegistryClient, tiny_model: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    with pytest.raises(InvalidRequest, match="truncated") as caught:
        await registry.register(path=str(cut))
    assert str(cut) in caught.value.message


async def test_missing_file_and_unknown_name(registry: RegistryClient, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"does not exist|no such file|not found"):
        await registry.register(path=str(tmp_path / "absent.gguf"))
    with pytest.raises(NotFound, match=r"no model named 'nothing-like-this'.*smollm2"):
        await registry.register(name="nothing-like-this")
    with pytest.raises(InvalidRequest, match="not a valid model name"):
        await registry.register(name="../etc/passwd")
    with pytest.raises(NotFound, match="not in the catalog"):
        await registry.locate("never-registered", "n1")


async def test_inspect_reads_only_model_folders_and_registered_files(
    registry: RegistryClient, tiny_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(Forbidden, match="only files under its model folders"):
        await registry.inspect(str(tiny_model))  # not registered yet, not in a model folder
    with pytest.raises(Forbidden, match="only files under its model folders") as caught:
        await registry.inspect("/etc/passwd")
    assert "root" not in caught.value.message
    await registry.register(path=str(tiny_model))
    facts = await registry.inspect(str(tiny_model))
    assert facts.embedding_length == 128 and facts.head_count == 4 and facts.head_count_kv == 2
    (tmp_path / "models").mkdir(exist_ok=True)
    shutil.copy(tiny_model, tmp_path / "models" / "copy.gguf")
    assert (await registry.inspect(str(tmp_path / "models" / "copy.gguf"))).block_count == 4


async def test_inspect_and_list(registry: RegistryClient, tiny_model: Path) -> None:
    await registry.register(path=str(tiny_model), alias="listed")


async def test_a_registered_mixture_of_experts_gets_its_experts_ranked(
    registry: RegistryClient, store: EtcdStore, mesh_id: str, tmp_path: Path
) -> None:
    """The registry's ranker notices a mixture of experts registered from its node, ranks
    it with llama-imatrix in the background and stores the ranking for placement; a dense
    model gets none."""
    moe = cached_model(SHAPE)
    settings = RegistrySettings(mesh_id=mesh_id, node="n1", cache_dir=str(tmp_path / "cache"))
    catalog = PrefixCache(store, keys.catalog(mesh_id), pb.CatalogEntry)
    ranker = ExpertRanker(settings, store, catalog)
    tasks = [asyncio.create_task(c.run()) for c in (catalog, ranker.rankings, ranker)]
    try:
        entry = await registry.register(path=str(moe))
        dense = await registry.register(path=str(cached_model(ModelShape())))
        key = keys.expert_ranking(mesh_id, entry.name)
        await eventually(lambda: entry.name in {r.model for r in ranker.rankings.items.values()},
                         timeout=60)  # fmt: skip
        ranking = await store.get(key, pb.ExpertRanking)
        assert ranking is not None and ranking.method == "imatrix" and ranking.node == "n1"
        assert len(ranking.layers) == SHAPE.layers
        assert all(set(layer.experts[:4]) <= {0, 1, 2, 3} for layer in ranking.layers)
        assert await store.get(keys.expert_ranking(mesh_id, dense.name), pb.ExpertRanking) is None
    finally:
        for component in (ranker, ranker.rankings, catalog):
            await component.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_same_file_registered_again_keeps_its_registration(
    registry: RegistryClient, store: EtcdStore, mesh_id: str, tiny_model: Path, tmp_path: Path
) -> None:
    """serve registers a node's model and its worker pins it again: the second must not look
    like a new file (rankings and shard measurements hang on the registration time), while a
    file changed since is registered anew."""
    model = tmp_path / "again.gguf"
    shutil.copy(tiny_model, model)
    os.utime(model, (1_000_000, 1_000_000))  # written long before
    entry = await registry.register(path=str(model))
    key = keys.catalog_entry(mesh_id, entry.name)
    entry.registered_unix = 2_000_000  # as if registered long ago, after the file was written
    await store.put(key, entry)
    await registry.register(path=str(model))
    kept = await store.get(key, pb.CatalogEntry)
    assert kept is not None and kept.registered_unix == 2_000_000
    os.utime(model)  # changed now
    await registry.register(path=str(model))
    renewed = await store.get(key, pb.CatalogEntry)
    assert renewed is not None and renewed.registered_unix > 2_000_000


async def test_a_draft_is_registered_with_its_model(
    registry: RegistryClient, store: EtcdStore, mesh_id: str, tiny_model: Path, draft_model: Path
) -> None:
    entry = await registry.register(path=str(tiny_model), draft=str(draft_model))
    assert entry.draft == draft_model.stem
    drafter = await store.get(keys.catalog_entry(mesh_id, entry.draft), pb.CatalogEntry)
    assert drafter is not None and drafter.facts.block_count == 2  # a model of its own
    stored = await store.get(keys.catalog_entry(mesh_id, entry.name), pb.CatalogEntry)
    assert stored is not None and stored.draft == entry.draft
    again = await registry.register(path=str(tiny_model))  # without one: it drafts no more
    assert again.draft == ""
    stored = await store.get(keys.catalog_entry(mesh_id, entry.name), pb.CatalogEntry)
    assert stored is not None and stored.draft == ""


@pytest.mark.parametrize(
    ("model", "draft", "message"),
    [
        ("tiny", "other-vocab", "its vocabulary has"),
        ("draft", "tiny", "it is not smaller than the model"),
        ("tiny", "./none.gguf", "draft ./none.gguf: "),
    ],
)
async def test_a_draft_that_cannot_draft_is_refused_and_nothing_changes(
    registry: RegistryClient,
    store: EtcdStore,
    mesh_id: str,
    tiny_model: Path,
    draft_model: Path,
    model: str,
    draft: str,
    message: str,
) -> None:
    files = {
        "tiny": str(tiny_model),
        "draft": str(draft_model),
        "other-vocab": str(cached_model(ModelShape(layers=1, vocab="gpt-2", name="gpt2-draft"))),
    }
    with pytest.raises((InvalidRequest, NotFound)) as refused:
        await registry.register(path=files[model], draft=files.get(draft, draft))
    assert message in refused.value.message
    listed = {e.name for e in await registry.list()}
    assert Path(files[model]).stem not in listed  # the model was not registered
