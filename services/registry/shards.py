"""Expert shards of a mixture-of-experts GGUF: a standalone model with the full trunk and a
subset of the experts, which its own llama-server runs with no traffic to other nodes.

Every tensor that is not per-expert is copied unchanged; the expert tensors (`*_exps`) keep
the kept experts' slices of the expert axis, the outermost, so each expert is one contiguous
byte range (quantized blocks included); the router (`ffn_gate_inp`) keeps the kept experts'
rows and so does a per-expert bias (`exp_probs_b`); shared experts (`*_shexp`) stay whole.
`expert_count` becomes the subset's size, `expert_used_count` is lowered only if it exceeds
it. The metadata is copied as bytes with those two values rewritten, the tensor table is
written anew, and all tensor data moves with `os.copy_file_range`, range by range, inside
the kernel: no tensor passes through Python, so writing runs at the speed of a plain copy
and in constant memory (gguf-py's reader and writer took seconds to parse and re-encode a
tokenizer and held whole tensors). The shard goes to a temporary file, its header is read
back and checked (tensor shapes, types, extents, the rewritten counts), then it is renamed
into place."""

from __future__ import annotations

import errno
import os
import re
import secrets
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from meshllm.core.gguf_header import GgufHeader, HeaderError, TensorInfo, read_header

# llama.cpp architectures whose expert tensors this slicing is checked against
MOE_ARCHITECTURES = ("llama", "qwen2moe", "qwen3moe")
_PER_EXPERT = re.compile(
    r"blk\.(\d+)\.(ffn_(?:gate|up|down|gate_up)_exps\.(?:weight|bias)|ffn_gate_inp\.weight"
    r"|exp_probs_b\.bias)$"
)
Progress = Callable[[int, int], None]  # (bytes written, bytes in all)
_CHUNK = 1 << 30  # the most one copy_file_range call is asked to move
_FALLBACK_CHUNK = 8 << 20  # read and write in this much where the kernel cannot copy


def is_per_expert(tensor_name: str) -> bool:
    """A tensor with one slice per expert on its outermost axis."""
    return _PER_EXPERT.fullmatch(tensor_name) is not None


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


def open_model(source: Path) -> GgufHeader:
    """The model's header, with a clear error for a file that is not a whole GGUF."""
    try:
        header = read_header(source)
    except (HeaderError, OSError, ValueError) as exc:
        raise ShardError(
            f"{source.name} cannot be read as GGUF (truncated or corrupt): {exc}"
        ) from None
    size = source.stat().st_size
    end = max((t.offset + t.n_bytes for t in header.tensors), default=0)
    if end > size:
        raise ShardError(
            f"{source.name} is truncated: its tensors end at byte {end}, the file at {size}"
        )
    if not header.little_endian:
        raise ShardError(f"{source.name} is a big-endian GGUF; convert it first")
    return header


def moe_layout(header: GgufHeader, source: Path) -> MoeLayout:
    """What sharding needs to know of a model, or ShardError naming what is wrong."""
    arch = str(header.fields.get("general.architecture", ""))
    experts = _int(header, f"{arch}.expert_count")
    if not experts:
        raise ShardError(
            f"{source.name} is not a mixture-of-experts model (no {arch}.expert_count)"
        )
    if arch not in MOE_ARCHITECTURES:
        raise ShardError(
            f"{source.name} is a {arch} mixture of experts; expert sharding supports "
            f"{', '.join(MOE_ARCHITECTURES)}"
        )
    if not any(t.name.endswith("_exps.weight") for t in header.tensors):
        raise ShardError(f"{source.name} has no *_exps tensors to slice (merged experts?)")
    used, blocks = _int(header, f"{arch}.expert_used_count"), _int(header, f"{arch}.block_count")
    return MoeLayout(arch, experts, used, blocks)


def write_shard(
    source: Path,
    dest: Path,
    experts: Sequence[Sequence[int]],
    progress: Progress | None = None,
) -> ShardResult:
    """Write the shard of `source` holding `experts[layer]` (expert ids, the same number in
    every layer) to `dest`."""
    header = open_model(source)
    layout = moe_layout(header, source)
    kept = _check_experts(experts, layout)
    count = len(kept[0])
    used = min(layout.expert_used_count, count)
    plan = [_PlannedTensor.of(t, kept, layout.expert_count) for t in header.tensors]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with source.open("rb") as src, tmp.open("wb") as out:
            out.write(_header_bytes(src, header, layout, plan, count, used))
            _copy_data(src, out, plan, header.alignment, progress)
        verify_shard(tmp, header, layout, count, used)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ShardResult(dest, dest.stat().st_size, count, used)


def _check_experts(experts: Sequence[Sequence[int]], layout: MoeLayout) -> list[list[int]]:
    if len(experts) != layout.block_count:
        raise ShardError(
            f"expert sets for {len(experts)} layers; the model has {layout.block_count}"
        )
    kept = [sorted(set(layer)) for layer in experts]
    sizes = {len(k) for k in kept}
    if len(sizes) != 1 or 0 in sizes:
        raise ShardError("every layer of a shard must hold the same, non-zero number of experts")
    if any(k[0] < 0 or k[-1] >= layout.expert_count for k in kept):
        raise ShardError(f"expert ids must lie in 0..{layout.expert_count - 1}")
    return kept


@dataclass(frozen=True)
class _PlannedTensor:
    source: TensorInfo
    dims: tuple[int, ...]  # ggml order: the expert axis last
    ranges: tuple[tuple[int, int], ...]  # (offset in the source, length) to copy, in order

    @property
    def n_bytes(self) -> int:
        return sum(length for _, length in self.ranges)

    @classmethod
    def of(cls, tensor: TensorInfo, kept: list[list[int]], experts: int) -> _PlannedTensor:
        match = _PER_EXPERT.fullmatch(tensor.name)
        if match is None:
            return cls(tensor, tensor.dims, ((tensor.offset, tensor.n_bytes),))
        if tensor.dims[-1] != experts:
            raise ShardError(f"{tensor.name} has {tensor.dims[-1]} experts, not {experts}")
        chosen = kept[int(match.group(1))]
        stride = tensor.n_bytes // experts
        ranges = [(tensor.offset + e * stride, stride) for e in chosen]
        return cls(tensor, (*tensor.dims[:-1], len(chosen)), tuple(_merged(ranges)))


def _merged(ranges: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Adjacent ranges as one (consecutive experts are one copy)."""
    start, length = ranges[0]
    for offset, size in ranges[1:]:
        if offset == start + length:
            length += size
        else:
            yield start, length
            start, length = offset, size
    yield start, length


def _header_bytes(
    src: BinaryIO,
    header: GgufHeader,
    layout: MoeLayout,
    plan: list[_PlannedTensor],
    count: int,
    used: int,
) -> bytes:
    """The shard's header: the source's metadata bytes with the expert counts rewritten,
    then a new tensor table, padded to the data's alignment."""
    kv_start, kv_end = header.kv_span
    metadata = bytearray(os.pread(src.fileno(), kv_end - kv_start, kv_start))
    for key, value in ((f"{layout.architecture}.expert_count", count),
                       (f"{layout.architecture}.expert_used_count", used)):  # fmt: skip
        if key in header.scalar_at:
            at, code = header.scalar_at[key]
            struct.pack_into("<" + code, metadata, at - kv_start, value)
    table = bytearray()
    offset = 0
    for tensor in plan:
        name = tensor.source.name.encode()
        table += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(tensor.dims))
        table += struct.pack(f"<{len(tensor.dims)}Q", *tensor.dims)
        table += struct.pack("<IQ", tensor.source.ggml_type, offset)
        offset += _padded(tensor.n_bytes, header.alignment)
    preamble = b"GGUF" + struct.pack("<IQQ", header.version, len(plan), len(header.fields))
    head = preamble + metadata + table
    return head + bytes(_padded(len(head), header.alignment) - len(head))


def _copy_data(
    src: BinaryIO,
    out: BinaryIO,
    plan: list[_PlannedTensor],
    alignment: int,
    progress: Progress | None,
) -> None:
    out.flush()
    total = sum(t.n_bytes for t in plan)
    done = 0
    position = out.tell()
    for tensor in plan:
        for offset, length in tensor.ranges:
            _copy_range(src.fileno(), offset, out.fileno(), position, length)
            position += length
            done += length
            if progress is not None:
                progress(done, total)
        pad = _padded(tensor.n_bytes, alignment) - tensor.n_bytes
        os.pwrite(out.fileno(), bytes(pad), position)
        position += pad


def _copy_range(src: int, offset: int, out: int, position: int, length: int) -> None:
    while length:
        try:
            moved = os.copy_file_range(src, out, min(length, _CHUNK), offset, position)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            moved = os.pwrite(out, os.pread(src, min(length, _FALLBACK_CHUNK), offset), position)
        if moved <= 0:
            raise ShardError("the source ended while copying a tensor")
        offset, position, length = offset + moved, position + moved, length - moved


def _padded(size: int, alignment: int) -> int:
    return -(-size // alignment) * alignment


def verify_shard(path: Path, source: GgufHeader, layout: MoeLayout, count: int, used: int) -> None:
    """Read the written shard's header back: the same tensors, per-expert ones cut to
    `count` on the expert axis and every other one the same shape and type, all inside the
    file, and the rewritten expert counts."""
    try:
        shard = read_header(path)
    except HeaderError as exc:
        raise ShardError(f"{path.name}: the written header does not read back: {exc}") from None
    arch = layout.architecture
    counts = (_int(shard, f"{arch}.expert_count"), _int(shard, f"{arch}.expert_used_count"))
    if counts != (count, used):
        raise ShardError(f"{path.name}: expert counts were not written as planned")
    originals = {t.name: t for t in source.tensors}
    if [t.name for t in shard.tensors] != list(originals):
        raise ShardError(f"{path.name}: the tensors differ from the source's")
    end = max((t.offset + t.n_bytes for t in shard.tensors), default=0)
    if end > path.stat().st_size:
        raise ShardError(f"{path.name}: tensor data runs past the end of the file")
    for tensor in shard.tensors:
        original = originals[tensor.name]
        expected = list(original.dims)
        if _PER_EXPERT.fullmatch(tensor.name):
            expected[-1] = count
        if list(tensor.dims) != expected or tensor.ggml_type != original.ggml_type:
            raise ShardError(
                f"{path.name}: tensor {tensor.name} is {list(tensor.dims)}, not {expected}"
            )


def _int(header: GgufHeader, key: str) -> int:
    value = header.fields.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
