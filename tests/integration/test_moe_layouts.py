"""The qwen2moe and qwen3moe layouts, generated with a router that always picks among experts
0-3, through the same path as the Mixtral layout: llama-imatrix ranks the routed experts
first, a shard of every expert is the original tensor for tensor, and a shard of the routed
experts is the model. qwen3moe renormalises the picked experts' weights, so that shard
answers token for token as the full model. qwen2moe does not (its shared expert is gated
separately and the picked weights stay shares of a softmax over every expert): a shard loses
the dropped experts' share, so it can only be close, and the quality gate is what tells it
from a shard without the routed experts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gguf
import numpy as np
import pytest
from test_shards import greedy_tokens

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core.binaries import find_binary, find_companion
from meshllm.registry.expert_ranking import IMATRIX, rank_experts
from meshllm.registry.quality import Perplexity
from meshllm.registry.shards import write_shard

pytestmark = pytest.mark.integration
LAYERS, ROUTED, UNROUTED = 2, [0, 1, 2, 3], [4, 5, 6, 7]


def shape(architecture: str) -> ModelShape:
    # A sharper router leaves the never-picked experts ~1 % of qwen2moe's softmax.
    return ModelShape(
        layers=LAYERS, embedding=128, feed_forward=256, heads=4, kv_heads=2,
        name=f"tiny-{architecture}", experts=8, experts_used=2, router="pairs", seed=3,
        architecture=architecture, router_scale=4.0 if architecture == "qwen2moe" else 1.0,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["qwen2moe", "qwen3moe"])
def layout(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, cached_model(shape(request.param))


def companion(name: str) -> str:
    found = find_companion(name, find_binary("llama-server").path)
    assert found is not None, f"no {name} beside llama-server: run `make llama`"
    return found.path


def tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def test_the_file_is_the_layout_llama_cpp_expects(layout: tuple[str, Path]) -> None:
    architecture, model = layout
    reader = gguf.GGUFReader(model)
    assert reader.fields["general.architecture"].contents() == architecture
    assert reader.fields[f"{architecture}.expert_feed_forward_length"].contents() == 256
    names = set(tensors(model))
    extra = (
        "blk.0.ffn_up_shexp.weight" if architecture == "qwen2moe" else "blk.0.attn_q_norm.weight"
    )
    assert extra in names and "blk.0.ffn_up_exps.weight" in names


def test_imatrix_ranks_the_routed_experts_first(layout: tuple[str, Path]) -> None:
    ranking = rank_experts(layout[1], companion("llama-imatrix"))
    assert ranking.method == IMATRIX
    for order in ranking.order:
        assert set(order[:4]) == set(ROUTED)


def test_a_shard_of_every_expert_is_the_original(layout: tuple[str, Path], tmp_path: Path) -> None:
    model = layout[1]
    shard = write_shard(model, tmp_path / "all.gguf", [list(range(8))] * LAYERS)
    original, copy = tensors(model), tensors(shard.path)
    assert list(copy) == list(original)
    for name, tensor in original.items():
        assert np.asarray(copy[name].data).tobytes() == np.asarray(tensor.data).tobytes(), name


def test_shared_experts_stay_whole_and_experts_are_sliced(
    layout: tuple[str, Path], tmp_path: Path
) -> None:
    architecture, model = layout
    shard = write_shard(model, tmp_path / "routed.gguf", [ROUTED] * LAYERS)
    original, copy = tensors(model), tensors(shard.path)
    for name, tensor in original.items():
        data = np.asarray(copy[name].data)
        if "_exps" in name or name.endswith("ffn_gate_inp.weight"):
            assert data.tobytes() == np.asarray(tensor.data)[ROUTED].tobytes(), name
        else:  # the trunk, and qwen2moe's shared expert with its gate
            assert data.tobytes() == np.asarray(tensor.data).tobytes(), name
    shared = [n for n in copy if "_shexp" in n]
    assert len(shared) == (4 * LAYERS if architecture == "qwen2moe" else 0)


async def test_the_shard_of_the_routed_experts_is_the_model(
    llama_server_bin: str, layout: tuple[str, Path], tmp_path: Path
) -> None:
    architecture, model = layout
    routed = write_shard(model, tmp_path / "routed.gguf", [ROUTED] * LAYERS)
    unrouted = write_shard(model, tmp_path / "unrouted.gguf", [UNROUTED] * LAYERS)
    full = await greedy_tokens(llama_server_bin, model)
    assert all(len(tokens) == 24 for tokens in full)
    if architecture == "qwen3moe":
        assert await greedy_tokens(llama_server_bin, routed.path) == full
    gauge = Perplexity(companion("llama-perplexity"))
    base = tmp_path / "full.kld"
    await asyncio.to_thread(gauge.save_base, model, base)
    good = await asyncio.to_thread(gauge.judge, routed.path, base)
    bad = await asyncio.to_thread(gauge.judge, unrouted.path, base)
    assert good.passed, good.describe()
    assert not bad.passed and bad.same_top < good.same_top - 0.3, bad.describe()
    if architecture == "qwen3moe":
        assert good.same_top == 1.0
