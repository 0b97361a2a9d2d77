"""Expert shards written from a generated mixture of experts (8 experts, top 2) whose router
always picks among experts 0-3: the shard holding 0-3 answers exactly as the full model
does, a shard holding all 8 is the original tensor for tensor, every shard loads in
llama-server and generates, quantized experts slice as raw bytes, and inputs that cannot be
sharded are refused with a message that says why."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import gguf
import numpy as np
import pytest
from helpers import LlamaServer

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core.binaries import find_binary, find_companion
from meshllm.registry.quality import Perplexity, QualityError
from meshllm.registry.shards import ShardError, write_shard

pytestmark = pytest.mark.integration
SHAPE = ModelShape(
    layers=2, embedding=128, feed_forward=256, heads=4, kv_heads=2, name="tiny-moe",
    experts=8, experts_used=2, router="pairs", seed=3,
)  # fmt: skip
PROMPTS = ["The quick brown fox", "Once upon a time in a land"]


@pytest.fixture(scope="module")
def moe_model() -> Path:
    return cached_model(SHAPE)


@asynccontextmanager
async def serving(binary: str, model: Path) -> AsyncIterator[LlamaServer]:
    server = LlamaServer(binary, model, context=512, parallel=1, threads=1)
    await server.start()
    try:
        yield server
    finally:
        await server.process.stop(5)


async def greedy_tokens(binary: str, model: Path) -> list[list[int]]:
    answers = []
    async with serving(binary, model) as server, aiohttp.ClientSession() as http:
        for prompt in PROMPTS:
            body = {"prompt": prompt, "n_predict": 24, "temperature": 0, "return_tokens": True,
                    "ignore_eos": True, "cache_prompt": False}  # fmt: skip
            async with http.post(f"{server.url}/completion", json=body) as reply:
                assert reply.status == 200, await reply.text()
                answers.append((await reply.json())["tokens"])
    return answers


def every_layer(*experts: int) -> list[list[int]]:
    return [list(experts)] * SHAPE.layers


async def test_the_shard_of_the_routed_experts_answers_as_the_full_model(
    llama_server_bin: str, moe_model: Path, tmp_path: Path
) -> None:
    shard = write_shard(moe_model, tmp_path / "routed.gguf", every_layer(0, 1, 2, 3))
    assert (shard.expert_count, shard.expert_used_count) == (4, 2)
    full = await greedy_tokens(llama_server_bin, moe_model)
    assert all(len(tokens) == 24 for tokens in full)
    assert await greedy_tokens(llama_server_bin, shard.path) == full


async def test_a_shard_without_the_routed_experts_answers_differently(
    llama_server_bin: str, moe_model: Path, tmp_path: Path
) -> None:
    """Every shard loads and generates; one lacking the experts the router picks is not
    the same model (what the quality gate is there to catch)."""
    shard = write_shard(moe_model, tmp_path / "unrouted.gguf", every_layer(4, 5, 6, 7))
    mixed = write_shard(moe_model, tmp_path / "mixed.gguf", [[0, 1, 4, 5], [2, 3, 6, 7]])
    full = await greedy_tokens(llama_server_bin, moe_model)
    unrouted = await greedy_tokens(llama_server_bin, shard.path)
    assert all(len(tokens) == 24 for tokens in unrouted) and unrouted != full
    assert all(len(t) == 24 for t in await greedy_tokens(llama_server_bin, mixed.path))


def test_a_shard_of_every_expert_is_the_original(moe_model: Path, tmp_path: Path) -> None:
    progress: list[tuple[int, int]] = []
    shard = write_shard(
        moe_model,
        tmp_path / "all.gguf",
        every_layer(*range(8)),
        lambda d, t: progress.append((d, t)),
    )
    original, copy = gguf.GGUFReader(moe_model), gguf.GGUFReader(shard.path)
    assert [t.name for t in copy.tensors] == [t.name for t in original.tensors]
    for a, b in zip(original.tensors, copy.tensors, strict=True):
        assert a.tensor_type == b.tensor_type and list(a.shape) == list(b.shape)
        assert np.asarray(a.data).tobytes() == np.asarray(b.data).tobytes(), a.name
    assert set(copy.fields) == set(original.fields)
    assert progress[-1][0] == progress[-1][1] > 0  # the progress ends at the total


async def test_quantized_experts_slice_as_raw_bytes(
    llama_server_bin: str, moe_model: Path, tmp_path: Path
) -> None:
    quantize = find_companion("llama-quantize", find_binary("llama-server").path)
    assert quantize is not None, "no llama-quantize beside llama-server: run `make llama`"
    q8 = tmp_path / "moe-q8.gguf"
    argv = [quantize.path, str(moe_model), str(q8), "Q8_0", "1"]
    await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True)
    exps = next(t for t in gguf.GGUFReader(q8).tensors if t.name.endswith("ffn_up_exps.weight"))
    assert exps.tensor_type == gguf.GGMLQuantizationType.Q8_0
    shard = write_shard(q8, tmp_path / "q8-routed.gguf", every_layer(0, 1, 2, 3))
    assert await greedy_tokens(llama_server_bin, shard.path) == await greedy_tokens(
        llama_server_bin, q8
    )


def test_what_cannot_be_sharded_is_refused_with_the_reason(
    moe_model: Path, tiny_model: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(moe_model.read_bytes()[: moe_model.stat().st_size // 2])
    cases = [
        (cut, every_layer(0, 1, 2, 3), "truncated"),
        (tiny_model, every_layer(0, 1), "is not a mixture-of-experts model"),
        (moe_model, every_layer(0, 1, 2, 8), "expert ids must lie in 0..7"),
        (moe_model, [[0, 1, 2], [0, 1]], "the same, non-zero number of experts"),
        (moe_model, [[0, 1]], "expert sets for 1 layers; the model has 2"),
        (other_architecture(tmp_path), every_layer(0, 1), "deepseek2 mixture of experts"),
    ]
    for source, experts, message in cases:
        with pytest.raises(ShardError, match=message):
            write_shard(source, tmp_path / "out.gguf", experts)
        assert not (tmp_path / "out.gguf").exists()
        assert not list(tmp_path.glob(".out.gguf.*"))  # no temporary file left behind


def other_architecture(tmp_path: Path) -> Path:
    path = tmp_path / "deepseek.gguf"
    writer = gguf.GGUFWriter(path, "deepseek2")
    writer.add_block_count(1)
    writer.add_expert_count(4)
    writer.add_expert_used_count(2)
    writer.add_tensor("blk.0.ffn_up_exps.weight", np.zeros((4, 8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


async def test_the_quality_gate_refuses_a_shard_without_the_routed_experts(
    moe_model: Path, tmp_path: Path
) -> None:
    binary = find_companion("llama-perplexity", find_binary("llama-server").path)
    assert binary is not None, "no llama-perplexity beside llama-server: run `make llama`"
    gauge = Perplexity(binary.path)
    base = tmp_path / "full.kld"
    await asyncio.to_thread(gauge.save_base, moe_model, base)
    routed = write_shard(moe_model, tmp_path / "routed.gguf", every_layer(0, 1, 2, 3))
    unrouted = write_shard(moe_model, tmp_path / "unrouted.gguf", every_layer(4, 5, 6, 7))
    good = await asyncio.to_thread(gauge.judge, routed.path, base)
    bad = await asyncio.to_thread(gauge.judge, unrouted.path, base)
    assert good.passed and good.same_top == 1.0 and abs(good.ppl_ratio - 1) < 1e-3
    assert not bad.passed and bad.same_top < 0.6, bad.describe()
    with pytest.raises(QualityError, match="exited"):
        gauge.judge(tmp_path / "missing.gguf", base)
    (tmp_path / "junk.kld").write_bytes(b"not a base file")
    with pytest.raises(QualityError, match="does not look like a file containing log-prob"):
        gauge.judge(routed.path, tmp_path / "junk.kld")
