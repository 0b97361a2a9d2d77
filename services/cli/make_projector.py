"""Generate a tiny random-weight vision projector (mmproj) GGUF for tests: a CLIP vision
encoder with a LLaVA MLP projector, which llama-server loads with `--mmproj` beside a text
model whose embedding size equals the projector's output size."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from meshllm.cli.make_model import ModelShape, _default_cache_dir

# Part of the cache key: bump it when the generated layout changes so stale caches are not reused.
_FORMAT_VERSION = 1
_WEIGHT_SCALE = 0.02
_LAYER_NORM_EPS = 1e-6
# CLIP's normalisation; clip.cpp refuses a vision projector without mean and std.
_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ProjectorShape:
    image_size: int = 32
    patch_size: int = 8  # (32 / 8)² = 16 image tokens
    embedding: int = 64
    feed_forward: int = 128
    heads: int = 4
    # LLaVA takes the second-to-last layer's output: 2 layers run one of them
    layers: int = 2
    projection_dim: int = ModelShape().embedding  # the text model's embedding size
    seed: int = 0
    name: str = "tiny-clip"

    def __post_init__(self) -> None:
        sizes = ("image_size", "patch_size", "embedding", "feed_forward", "heads", "layers")
        for field in (*sizes, "projection_dim"):
            if getattr(self, field) <= 0:
                raise ValueError(f"ProjectorShape.{field} must be positive")
        if self.image_size % self.patch_size:
            raise ValueError("ProjectorShape.image_size must be a multiple of patch_size")
        if self.embedding % self.heads:
            raise ValueError("ProjectorShape.embedding must be a multiple of heads")
        if not self.name or "/" in self.name or os.sep in self.name:
            raise ValueError("ProjectorShape.name must be a non-empty file name part")

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def cache_key(self) -> str:
        """Short hash of every field, stable across runs and machines."""
        payload = {"format": _FORMAT_VERSION, **dataclasses.asdict(self)}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_projector(path: Path, shape: ProjectorShape) -> Path:
    """Write a random-weight projector to `path` atomically and return `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_gguf(tmp, shape)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def cached_projector(shape: ProjectorShape, cache_dir: Path | None = None) -> Path:
    """Return a generated projector for `shape`, writing it into the cache (the generated
    models' cache) only when missing."""
    directory = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    target = directory / f"mmproj-{shape.name}-{shape.cache_key()}.gguf"
    if target.is_file():
        return target
    return write_projector(target, shape)


def _write_gguf(tmp: Path, shape: ProjectorShape) -> None:
    writer = gguf.GGUFWriter(tmp, "clip")
    try:
        _add_keys(writer, shape)
        specs = _tensor_specs(shape)
        for name, data in _tensor_data(specs, shape.seed):
            writer.add_tensor(name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _add_keys(writer: gguf.GGUFWriter, shape: ProjectorShape) -> None:
    writer.add_name(shape.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type("mlp")
    writer.add_vision_image_size(shape.image_size)
    writer.add_vision_patch_size(shape.patch_size)
    writer.add_vision_embedding_length(shape.embedding)
    writer.add_vision_feed_forward_length(shape.feed_forward)
    writer.add_vision_head_count(shape.heads)
    writer.add_vision_block_count(shape.layers)
    writer.add_vision_projection_dim(shape.projection_dim)
    writer.add_vision_attention_layernorm_eps(_LAYER_NORM_EPS)
    writer.add_vision_image_mean(list(_IMAGE_MEAN))
    writer.add_vision_image_std(list(_IMAGE_STD))


def _tensor_specs(shape: ProjectorShape) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes (numpy order; ggml's ne is the reverse)."""
    embd, ff, proj, p = shape.embedding, shape.feed_forward, shape.projection_dim, shape.patch_size
    specs: dict[str, tuple[int, ...]] = {
        "v.patch_embd.weight": (embd, 3, p, p),
        "v.patch_embd.bias": (embd,),
        "v.position_embd.weight": (shape.patches, embd),
        "v.pre_ln.weight": (embd,),
        "v.pre_ln.bias": (embd,),
    }
    for i in range(shape.layers):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            specs[f"v.blk.{i}.{part}.weight"] = (embd, embd)
            specs[f"v.blk.{i}.{part}.bias"] = (embd,)
        for norm in ("ln1", "ln2"):
            specs[f"v.blk.{i}.{norm}.weight"] = (embd,)
            specs[f"v.blk.{i}.{norm}.bias"] = (embd,)
        specs[f"v.blk.{i}.ffn_up.weight"] = (ff, embd)
        specs[f"v.blk.{i}.ffn_up.bias"] = (ff,)
        specs[f"v.blk.{i}.ffn_down.weight"] = (embd, ff)
        specs[f"v.blk.{i}.ffn_down.bias"] = (embd,)
    # LLaVA's projector: linear, GELU, linear. clip.cpp reads the output size from mm.2.
    specs["mm.0.weight"] = (proj, embd)
    specs["mm.0.bias"] = (proj,)
    specs["mm.2.weight"] = (proj, proj)
    specs["mm.2.bias"] = (proj,)
    return specs


def _tensor_data(
    specs: dict[str, tuple[int, ...]], seed: int
) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(seed)
    for name, dims in specs.items():
        if name.endswith(".bias"):
            yield name, np.zeros(dims, dtype=np.float32)
        elif len(dims) == 1:  # a norm's weight
            yield name, np.ones(dims, dtype=np.float32)
        else:
            yield name, rng.standard_normal(dims, dtype=np.float32) * np.float32(_WEIGHT_SCALE)
