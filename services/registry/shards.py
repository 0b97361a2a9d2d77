"""Expert shards of a mixture-of-experts GGUF: a standalone model with the full trunk and a
subset of the experts, which its own llama-server runs with no traffic to other nodes.

Written with gguf-py, one tensor at a time (never the whole model in memory): every tensor
that is not per-expert is copied unchanged; the expert tensors (`*_exps`) are sliced on the
expert axis, the outermost, so quantized data is sliced as raw bytes; the router
(`ffn_gate_inp`) keeps the rows of the kept experts and so does a per-expert bias
(`exp_probs_b`); shared experts (`*_shexp`) stay whole. `expert_count` becomes the subset's
size, `expert_used_count` is lowered only if it exceeds it. The shard goes to a temporary
file, is read back and checked (tensor shapes, metadata), then renamed into place."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from meshllm.core.gguf_fields import FRAMING_KEYS, copy_field

# llama.cpp architectures whose expert tensors this slicing is checked against
MOE_ARCHITECTURES = ("llama", "qwen2moe", "qwen3moe")
_PER_EXPERT = re.compile(
    r"blk\.(\d+)\.(ffn_(?:gate|up|down|gate_up)_exps\.(?:weight|bias)|ffn_gate_inp\.weight"
    r"|exp_probs_b\.bias)$"
)
Progress = Callable[[int, int], None]  # (bytes written, bytes in all)


class ShardError(ValueError):
    """The model cannot be sharded as asked: the message says why."""


@dataclass(frozen=True)
class MoeLayout:
    architecture: str
    expert_count: int
    expert_used_count: int
    block_count: int


@dataclass(frozen=True)
class ShardResult:
    path: Path
    size_bytes: int
    expert_count: int
    expert_used_count: int


def moe_layout(reader: gguf.GGUFReader, source: Path) -> MoeLayout:
    """What sharding needs to know of a model, or ShardError naming what is wrong."""
    arch = _string(reader, "general.architecture")
    experts = _int(reader, f"{arch}.expert_count")
    if not experts:
        raise ShardError(
            f"{source.name} is not a mixture-of-experts model (no {arch}.expert_count)"
        )
    if arch not in MOE_ARCHITECTURES:
        raise ShardError(
            f"{source.name} is a {arch} mixture of experts; expert sharding supports "
            f"{', '.join(MOE_ARCHITECTURES)}"
        )
    if not any(t.name.endswith("_exps.weight") for t in reader.tensors):
        raise ShardError(f"{source.name} has no *_exps tensors to slice (merged experts?)")
    return MoeLayout(
        arch,
        experts,
        _int(reader, f"{arch}.expert_used_count"),
        _int(reader, f"{arch}.block_count"),
    )


def open_model(source: Path) -> gguf.GGUFReader:
    """gguf-py's reader (memory-mapped: tensor data is read as it is used), with a clear
    error for a file that is not a whole GGUF."""
    try:
        reader = gguf.GGUFReader(source, "r")
    except (ValueError, OSError, IndexError) as exc:
        raise ShardError(
            f"{source.name} cannot be read as GGUF (truncated or corrupt): {exc}"
        ) from None
    size = source.stat().st_size
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise ShardError(
            f"{source.name} is truncated: its tensors end at byte {end}, the file at {size}"
        )
    return reader


def write_shard(
    source: Path,
    dest: Path,
    experts: Sequence[Sequence[int]],
    progress: Progress | None = None,
) -> ShardResult:
    """Write the shard of `source` holding `experts[layer]` (sorted expert ids, the same
    number in every layer) to `dest`."""
    reader = open_model(source)
    layout = moe_layout(reader, source)
    kept = _check_experts(experts, layout)
    count = len(kept[0])
    used = min(layout.expert_used_count, count)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write(reader, layout, kept, count, used, tmp, progress)
        verify_shard(tmp, reader, layout, count, used)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ShardResult(dest, dest.stat().st_size, count, used)


def _check_experts(experts: Sequence[Sequence[int]], layout: MoeLayout) -> list[np.ndarray]:
    if len(experts) != layout.block_count:
        raise ShardError(
            f"expert sets for {len(experts)} layers; the model has {layout.block_count}"
        )
    kept = [np.asarray(sorted(set(layer)), dtype=np.int64) for layer in experts]
    sizes = {len(k) for k in kept}
    if len(sizes) != 1 or 0 in sizes:
        raise ShardError("every layer of a shard must hold the same, non-zero number of experts")
    if any(k[0] < 0 or k[-1] >= layout.expert_count for k in kept):
        raise ShardError(f"expert ids must lie in 0..{layout.expert_count - 1}")
    return kept


def _write(
    reader: gguf.GGUFReader,
    layout: MoeLayout,
    kept: list[np.ndarray],
    count: int,
    used: int,
    tmp: Path,
    progress: Progress | None,
) -> None:
    writer = gguf.GGUFWriter(tmp, layout.architecture)
    try:
        rewritten = {
            f"{layout.architecture}.expert_count": count,
            f"{layout.architecture}.expert_used_count": used,
        }
        for key, field in reader.fields.items():
            if key in FRAMING_KEYS or key == "general.architecture":
                continue
            if key in rewritten:
                writer.add_uint32(key, rewritten[key])
            elif key == "general.alignment":
                writer.add_custom_alignment(int(field.contents()))
            else:
                copy_field(writer, key, field)
        tensors = [(t, _slice(t, kept)) for t in reader.tensors]
        for tensor, data in tensors:
            writer.add_tensor_info(
                tensor.name, data.shape, data.dtype, data.nbytes, raw_dtype=tensor.tensor_type
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = sum(d.nbytes for _, d in tensors)
        done = 0
        for _, data in tensors:
            writer.write_tensor_data(np.ascontiguousarray(data))
            done += data.nbytes
            if progress is not None:
                progress(done, total)
        writer.flush()
    finally:
        writer.close()


def _slice(tensor: Any, kept: list[np.ndarray]) -> np.ndarray:
    """The tensor's data for the shard: a lazy view of the source, or the kept experts'
    rows (numpy's first axis is ggml's last, the expert axis)."""
    match = _PER_EXPERT.fullmatch(tensor.name)
    if match is None:
        return tensor.data
    return tensor.data[kept[int(match.group(1))]]


def verify_shard(
    path: Path, source: gguf.GGUFReader, layout: MoeLayout, count: int, used: int
) -> None:
    """Read the written shard back: the same tensors, per-expert ones cut to `count` on the
    expert axis and every other one the same shape, and the rewritten expert counts."""
    shard = gguf.GGUFReader(path, "r")
    arch = layout.architecture
    if (
        _int(shard, f"{arch}.expert_count") != count
        or _int(shard, f"{arch}.expert_used_count") != used
    ):
        raise ShardError(f"{path.name}: expert counts were not written as planned")
    originals = {t.name: t for t in source.tensors}
    if [t.name for t in shard.tensors] != list(originals):
        raise ShardError(f"{path.name}: the tensors differ from the source's")
    for tensor in shard.tensors:
        expected = list(originals[tensor.name].shape)
        if _PER_EXPERT.fullmatch(tensor.name):
            expected[-1] = count
        if (
            list(tensor.shape) != expected
            or tensor.tensor_type != originals[tensor.name].tensor_type
        ):
            raise ShardError(
                f"{path.name}: tensor {tensor.name} is {list(tensor.shape)}, not {expected}"
            )


def _string(reader: gguf.GGUFReader, key: str) -> str:
    field = reader.fields.get(key)
    return str(field.contents()) if field is not None else ""


def _int(reader: gguf.GGUFReader, key: str) -> int:
    field = reader.fields.get(key)
    return int(field.contents()) if field is not None else 0
