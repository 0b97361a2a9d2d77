"""Zero-transfer weight loading for a split's peer, without changing llama.cpp.

With `rpc-server --cache`, a host sends a 64-bit FNV-1a hash instead of the bytes of each
weight tensor over 10 MiB; on a hit the peer reads the tensor from `$LLAMA_CACHE/rpc/<hash>`.
A peer whose node holds the model's GGUF fills that directory from its own file before its
rpc-server starts — only the tensors of the layers its host will give it, hashed by a small C
helper (`mesh-rpc-cache-fill`, built with llama.cpp: ~1 GB/s where Python manages ~13 MB/s),
each file written under a temporary name and renamed, since the server never re-checks a
hash. A peer without the file receives its own layers' tensors over RPC once and the server
keeps them in the same cache, so the next load of that split sends only hashes either way.

Which layers a device gets mirrors llama.cpp's `llm_load_tensors`: the last `gpu_layers`
"layers" (the output counts as one, after the repeating layers) are offloaded, spread over the
devices by the cumulative `--tensor-split` weights.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshllm.core.gguf_header import TensorInfo

logger = logging.getLogger(__name__)
HASH_THRESHOLD = 10 * 2**20  # llama.cpp's ggml-rpc: tensors larger than this go by hash
HELPER = "mesh-rpc-cache-fill"


def layer_devices(block_count: int, weights: Sequence[float], gpu_layers: int) -> list[int | None]:
    """For each layer 0..block_count (the last being the output), the index of the device
    llama.cpp puts it on, or None for the host's CPU."""
    total = sum(weights)
    cumulative, running = [], 0.0
    for w in weights:
        running += w
        cumulative.append(running / total)
    start = max(block_count + 1 - gpu_layers, 0)
    active = min(gpu_layers, block_count + 1) if weights else 0
    placed: list[int | None] = []
    for layer in range(block_count + 1):
        if layer < start or layer - start >= active:
            placed.append(None)
        else:
            index = bisect.bisect_right(cumulative, (layer - start) / active)
            placed.append(min(index, len(weights) - 1))
    return placed


def device_layers(
    block_count: int, weights: Sequence[float], gpu_layers: int, device: int
) -> set[int]:
    """The repeating layers (not the output) llama.cpp gives one device."""
    placed = layer_devices(block_count, weights, gpu_layers)
    return {layer for layer in range(block_count) if placed[layer] == device}


def tensors_to_fill(tensors: Sequence[TensorInfo], layers: set[int]) -> list[TensorInfo]:
    """The tensors of `layers` that a host would send by hash."""
    chosen = []
    for tensor in tensors:
        parts = tensor.name.split(".")
        if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit():
            if int(parts[1]) in layers and tensor.n_bytes > HASH_THRESHOLD:
                chosen.append(tensor)
    return chosen


@dataclass
class FillResult:
    tensors: int = 0
    written: int = 0  # tensors newly written (the rest were cached already)
    bytes: int = 0
    seconds: float = 0.0


async def fill_cache(
    helper: str, gguf: Path, cache_dir: Path, tensors: Sequence[TensorInfo], label: str
) -> FillResult:
    """Hash and write `tensors` of `gguf` into `cache_dir`, logging progress every few
    seconds. Raises RuntimeError when the helper fails."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    total = sum(t.n_bytes for t in tensors)
    result = FillResult()
    started = last_report = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        helper,
        str(gguf),
        str(cache_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write("".join(f"{t.offset} {t.n_bytes}\n" for t in tensors).encode())
    await proc.stdin.drain()
    proc.stdin.close()
    try:
        while line := await proc.stdout.readline():
            _, size, state = line.decode().split()
            result.tensors += 1
            result.bytes += int(size)
            result.written += state == "written"
            if time.monotonic() - last_report > 2.0:
                last_report = time.monotonic()
                logger.info(
                    "%s: RPC cache %d/%d tensors, %.1f/%.1f GB",
                    label,
                    result.tensors,
                    len(tensors),
                    result.bytes / 1e9,
                    total / 1e9,
                )
        error = (await proc.stderr.read()).decode(errors="replace").strip()
        if await proc.wait() != 0:
            raise RuntimeError(error or f"{helper} exited with {proc.returncode}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result.seconds = time.monotonic() - started
    return result
