from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshllm.core.gguf_header import TensorInfo
from meshllm.worker.rpc_cache import (
    HASH_THRESHOLD,
    device_layers,
    fill_cache,
    layer_devices,
    tensors_to_fill,
)

MiB = 2**20


@pytest.mark.parametrize(
    ("blocks", "weights", "gpu_layers", "expected"),
    [
        # a GPU host: everything offloaded, the peer first, the host (last) keeps the output
        (8, (0.5, 0.5), 999, [0, 0, 0, 0, 0, 1, 1, 1, 1]),
        (8, (0.25, 0.25, 0.5), 999, [0, 0, 0, 1, 1, 2, 2, 2, 2]),
        # a CPU host: its peers take the last layers and the output slot (kept on the CPU by
        # --override-tensor); the first layers stay on the CPU
        (8, (1.0,), 5, [None, None, None, None, 0, 0, 0, 0, 0]),
        (8, (1.0, 1.0), 5, [None, None, None, None, 0, 0, 0, 1, 1]),
        (4, (), 0, [None, None, None, None, None]),
    ],
)
def test_layers_land_where_llama_cpp_puts_them(
    blocks: int, weights: tuple[float, ...], gpu_layers: int, expected: list[int | None]
) -> None:
    assert layer_devices(blocks, weights, gpu_layers) == expected


def test_a_device_gets_its_repeating_layers_never_the_output() -> None:
    assert device_layers(8, (0.5, 0.5), 999, 0) == {0, 1, 2, 3, 4}
    assert device_layers(8, (0.5, 0.5), 999, 1) == {5, 6, 7}


def tensor(name: str, n_bytes: int, offset: int = 0) -> TensorInfo:
    return TensorInfo(name, (n_bytes,), 0, offset, n_bytes)


def test_only_large_tensors_of_the_peers_layers_are_filled() -> None:
    big = HASH_THRESHOLD + 1
    tensors = [
        tensor("token_embd.weight", big),
        tensor("blk.0.ffn_up.weight", big),
        tensor("blk.0.attn_norm.weight", 4096),
        tensor("blk.1.ffn_up.weight", HASH_THRESHOLD),  # not over the threshold: travels
        tensor("blk.2.ffn_up.weight", big),
        tensor("output.weight", big),
    ]
    assert [t.name for t in tensors_to_fill(tensors, {0, 1})] == ["blk.0.ffn_up.weight"]


def fnv1a64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The helper built from the project's source, as `make llama` builds it."""
    source = Path(__file__).parents[3] / "native" / "rpc_cache_fill.c"
    binary = tmp_path_factory.mktemp("helper") / "mesh-rpc-cache-fill"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    return str(binary)


async def test_the_helper_writes_each_tensor_under_its_fnv1a_hash(
    helper: str, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 4096 + b"tail"
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"header" + data)
    tensors = [tensor("blk.0.a", len(data), 6), tensor("blk.0.b", 1000, 106)]
    cache = tmp_path / "cache"
    first = await fill_cache(helper, gguf, cache, tensors, "test")
    assert (first.tensors, first.written, first.bytes) == (2, 2, len(data) + 1000)
    for chunk in (data, data[100:1100]):
        assert (cache / f"{fnv1a64(chunk):016x}").read_bytes() == chunk
    again = await fill_cache(helper, gguf, cache, tensors, "test")
    assert again.written == 0 and again.tensors == 2
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


async def test_a_range_outside_the_file_fails_clearly(helper: str, tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"x" * 100)
    with pytest.raises(RuntimeError, match="outside"):
        await fill_cache(helper, gguf, tmp_path / "cache", [tensor("blk.0.a", 50, 80)], "test")
