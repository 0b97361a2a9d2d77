"""Generate small GGUF models with random weights for tests and demos: dense llama models, and
mixtures of experts in the llama (Mixtral), qwen2moe (shared expert) and qwen3moe layouts."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf.gguf_reader import ReaderField

# The mixtures' layouts: llama is Mixtral's; qwen2moe adds a gated shared expert per layer;
# qwen3moe adds per-head query and key norms.
from meshllm.registry.shards import MOE_ARCHITECTURES

# Part of the cache key: bump it when the generated layout changes so stale caches are not reused.
_FORMAT_VERSION = 1
_WEIGHT_SCALE = 0.02
_RMS_EPS = 1e-5
_DTYPES: dict[str, tuple[type[np.floating[Any]], gguf.LlamaFileType]] = {
    "f32": (np.float32, gguf.LlamaFileType.ALL_F32),
    "f16": (np.float16, gguf.LlamaFileType.MOSTLY_F16),
}
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelShape:
    layers: int = 4
    embedding: int = 128
    feed_forward: int = 256
    heads: int = 4
    kv_heads: int = 2
    context: int = 2048
    vocab: str = "llama-spm"
    dtype: str = "f32"
    seed: int = 0
    name: str = "tiny-llama"
    experts: int = 0  # > 0: a mixture of experts
    experts_used: int = 0  # experts the router picks per token
    # "random" weights, or "pairs": experts 0 .. 2*experts_used-1 always win (each pair's
    # router rows are v and -v, one of which scores >= 0 while every other expert scores 0)
    router: str = "random"
    architecture: str = "llama"  # one of MOE_ARCHITECTURES for a mixture; llama when dense
    # Multiplies the "pairs" router's logits: sharper picks leave the experts that never win
    # a smaller share of the softmax (what a shard without them loses where the picked
    # weights are not renormalised, as in qwen2moe).
    router_scale: float = 1.0

    def __post_init__(self) -> None:
        sizes = ("layers", "embedding", "feed_forward", "heads", "kv_heads", "context")
        for field in sizes:
            if getattr(self, field) <= 0:
                raise ValueError(f"ModelShape.{field} must be positive")
        if self.embedding % self.heads:
            raise ValueError("ModelShape.embedding must be a multiple of heads")
        if self.heads % self.kv_heads:
            raise ValueError("ModelShape.heads must be a multiple of kv_heads")
        if self.dtype not in _DTYPES:
            raise ValueError(f"ModelShape.dtype must be one of {sorted(_DTYPES)}")
        if not self.name or "/" in self.name or os.sep in self.name:
            raise ValueError("ModelShape.name must be a non-empty file name part")
        if self.experts and not 0 < self.experts_used <= self.experts:
            raise ValueError("ModelShape.experts_used must be between 1 and experts")
        if self.router not in ("random", "pairs"):
            raise ValueError("ModelShape.router must be 'random' or 'pairs'")
        if self.router == "pairs" and 2 * self.experts_used > self.experts:
            raise ValueError("ModelShape.router 'pairs' needs experts >= 2 * experts_used")
        allowed = MOE_ARCHITECTURES if self.experts else ("llama",)
        if self.architecture not in allowed:
            raise ValueError(f"ModelShape.architecture must be one of {list(allowed)}")
        if not self.router_scale > 0:
            raise ValueError("ModelShape.router_scale must be positive")

    @property
    def head_dim(self) -> int:
        return self.embedding // self.heads

    def cache_key(self) -> str:
        """Short hash of every field, stable across runs and machines."""
        fields = dataclasses.asdict(self)
        if not self.experts:  # dense shapes keep the keys they had before experts existed
            for name in ("experts", "experts_used", "router"):
                fields.pop(name)
        # Fields added later join the key only when set, so earlier shapes keep their files.
        for name, default in (("architecture", "llama"), ("router_scale", 1.0)):
            if fields[name] == default:
                fields.pop(name)
        payload = {"format": _FORMAT_VERSION, **fields}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def find_vocab_file(vocab: str, search_dirs: Sequence[Path] | None = None) -> Path:
    """Locate llama.cpp's ggml-vocab-<vocab>.gguf in `search_dirs` or the default places."""
    file_name = f"ggml-vocab-{vocab}.gguf"
    dirs = list(search_dirs) if search_dirs is not None else _default_vocab_dirs()
    for directory in dirs:
        candidate = Path(directory) / file_name
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in dirs) or "nowhere"
    raise FileNotFoundError(
        f"{file_name} not found (searched: {searched}); run `make llama`, which puts "
        "llama.cpp's vocab files under ~/.cache/mesh-llm/llama.cpp/<build>/vocab, "
        "or set MESH_VOCAB_DIR to a directory that holds it"
    )


def _default_vocab_dirs() -> list[Path]:
    dirs: list[Path] = []
    env_dir = os.environ.get("MESH_VOCAB_DIR")
    if env_dir:
        dirs.append(Path(env_dir))
    builds = Path.home() / ".cache" / "mesh-llm" / "llama.cpp"
    dirs.extend(sorted(p for p in builds.glob("*/vocab") if p.is_dir()))
    return dirs


def write_model(
    path: Path, shape: ModelShape, vocab_file: Path, progress: Progress | None = None
) -> Path:
    """Write a random-weight model to `path` atomically and return `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_gguf(tmp, shape, Path(vocab_file), progress)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def cached_model(
    shape: ModelShape, cache_dir: Path | None = None, vocab_file: Path | None = None
) -> Path:
    """Return a generated model for `shape`, writing it into the cache only when missing."""
    directory = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    target = directory / f"{shape.name}-{shape.cache_key()}.gguf"
    if target.is_file():
        return target
    vocab = Path(vocab_file) if vocab_file is not None else find_vocab_file(shape.vocab)
    return write_model(target, shape, vocab)


def _default_cache_dir() -> Path:
    env_dir = os.environ.get("MESH_MODEL_CACHE")
    if env_dir:
        return Path(env_dir)
    return Path.home() / ".cache" / "mesh-llm" / "models" / "generated"


@functools.lru_cache(maxsize=4)
def _vocab_fields(vocab_file: Path) -> dict[str, ReaderField]:
    """Reading a vocabulary takes seconds (gguf-py decodes every token), so it is done once."""
    return dict(gguf.GGUFReader(vocab_file, "r").fields)


def _write_gguf(tmp: Path, shape: ModelShape, vocab_file: Path, progress: Progress | None) -> None:
    vocab_fields = _vocab_fields(vocab_file)
    n_vocab = _token_count(vocab_fields, vocab_file)
    writer = gguf.GGUFWriter(tmp, shape.architecture)
    try:
        _add_model_keys(writer, shape, n_vocab)
        _copy_tokenizer_keys(writer, vocab_fields)
        if "tokenizer.chat_template" not in vocab_fields:
            writer.add_chat_template(CHATML_TEMPLATE)
        specs = _tensor_specs(shape, n_vocab)
        _write_tensors(writer, specs, shape, progress)
    finally:
        writer.close()


def _token_count(fields: dict[str, ReaderField], vocab_file: Path) -> int:
    tokens = fields.get("tokenizer.ggml.tokens")
    if tokens is None or not tokens.data:
        raise ValueError(
            f"{vocab_file} has no tokenizer.ggml.tokens; pass a ggml-vocab-*.gguf file"
        )
    return len(tokens.data)


def _add_model_keys(writer: gguf.GGUFWriter, shape: ModelShape, n_vocab: int) -> None:
    writer.add_name(shape.name)
    writer.add_file_type(_DTYPES[shape.dtype][1])
    writer.add_block_count(shape.layers)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.embedding)
    writer.add_feed_forward_length(shape.feed_forward)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_vocab_size(n_vocab)
    if shape.experts:
        writer.add_expert_count(shape.experts)
        writer.add_expert_used_count(shape.experts_used)
    if shape.architecture != "llama":
        writer.add_expert_feed_forward_length(shape.feed_forward)
    if shape.architecture == "qwen2moe":
        writer.add_expert_shared_feed_forward_length(shape.feed_forward)


def _copy_tokenizer_keys(writer: gguf.GGUFWriter, fields: dict[str, ReaderField]) -> None:
    for key, field in fields.items():
        if key.startswith("tokenizer."):
            _copy_field(writer, key, field)


def _copy_field(writer: gguf.GGUFWriter, key: str, field: ReaderField) -> None:
    vtype = field.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub_type = field.types[-1]
        if len(field.types) != 2 or not field.data:
            return  # nested or empty arrays cannot be written by GGUFWriter
        if sub_type == gguf.GGUFValueType.STRING:
            # Raw bytes, so tokens that are not valid UTF-8 on their own survive the copy.
            values: list[Any] = [bytes(field.parts[i]) for i in field.data]
        else:
            values = field.contents()
        writer.add_key_value(key, values, vtype, sub_type=sub_type)
    elif vtype == gguf.GGUFValueType.STRING:
        writer.add_key_value(key, bytes(field.parts[-1]), vtype)
    else:
        writer.add_key_value(key, field.contents(), vtype)


@dataclass(frozen=True)
class _TensorSpec:
    name: str
    shape: tuple[int, ...]  # numpy order; GGUFWriter stores it reversed as ggml's ne

    @property
    def is_norm(self) -> bool:
        return "norm" in self.name


def _tensor_specs(shape: ModelShape, n_vocab: int) -> list[_TensorSpec]:
    embd = shape.embedding
    q_dim = shape.heads * shape.head_dim
    kv_dim = shape.kv_heads * shape.head_dim
    specs = [_TensorSpec("token_embd.weight", (n_vocab, embd))]
    for i in range(shape.layers):
        specs += [
            _TensorSpec(f"blk.{i}.attn_norm.weight", (embd,)),
            _TensorSpec(f"blk.{i}.attn_q.weight", (q_dim, embd)),
            _TensorSpec(f"blk.{i}.attn_k.weight", (kv_dim, embd)),
            _TensorSpec(f"blk.{i}.attn_v.weight", (kv_dim, embd)),
            _TensorSpec(f"blk.{i}.attn_output.weight", (embd, q_dim)),
            *_head_norm_specs(i, shape),
            _TensorSpec(f"blk.{i}.ffn_norm.weight", (embd,)),
            *_ffn_specs(i, shape),
            *_shared_expert_specs(i, shape),
        ]
    specs += [
        _TensorSpec("output_norm.weight", (embd,)),
        _TensorSpec("output.weight", (n_vocab, embd)),
    ]
    return specs


def _ffn_specs(i: int, shape: ModelShape) -> list[_TensorSpec]:
    embd, ff, n = shape.embedding, shape.feed_forward, shape.experts
    if not n:
        return [
            _TensorSpec(f"blk.{i}.ffn_gate.weight", (ff, embd)),
            _TensorSpec(f"blk.{i}.ffn_up.weight", (ff, embd)),
            _TensorSpec(f"blk.{i}.ffn_down.weight", (embd, ff)),
        ]
    return [  # numpy order: the expert axis outermost
        _TensorSpec(f"blk.{i}.ffn_gate_inp.weight", (n, embd)),
        _TensorSpec(f"blk.{i}.ffn_gate_exps.weight", (n, ff, embd)),
        _TensorSpec(f"blk.{i}.ffn_up_exps.weight", (n, ff, embd)),
        _TensorSpec(f"blk.{i}.ffn_down_exps.weight", (n, embd, ff)),
    ]


def _head_norm_specs(i: int, shape: ModelShape) -> list[_TensorSpec]:
    if shape.architecture != "qwen3moe":
        return []
    return [
        _TensorSpec(f"blk.{i}.attn_q_norm.weight", (shape.head_dim,)),
        _TensorSpec(f"blk.{i}.attn_k_norm.weight", (shape.head_dim,)),
    ]


def _shared_expert_specs(i: int, shape: ModelShape) -> list[_TensorSpec]:
    if shape.architecture != "qwen2moe":
        return []
    embd, ff = shape.embedding, shape.feed_forward
    return [
        _TensorSpec(f"blk.{i}.ffn_gate_inp_shexp.weight", (embd,)),
        _TensorSpec(f"blk.{i}.ffn_gate_shexp.weight", (ff, embd)),
        _TensorSpec(f"blk.{i}.ffn_up_shexp.weight", (ff, embd)),
        _TensorSpec(f"blk.{i}.ffn_down_shexp.weight", (embd, ff)),
    ]


def _tensor_dtype(spec: _TensorSpec, shape: ModelShape) -> np.dtype[Any]:
    # Norm weights, vectors and the router stay F32 in every llama.cpp file type.
    small = len(spec.shape) == 1 or spec.name.endswith("ffn_gate_inp.weight")
    return np.dtype(np.float32 if small else _DTYPES[shape.dtype][0])


def _write_tensors(
    writer: gguf.GGUFWriter,
    specs: list[_TensorSpec],
    shape: ModelShape,
    progress: Progress | None,
) -> None:
    # Declaring tensor infos up front lets each tensor be generated and written one at a time.
    for spec in specs:
        dtype = _tensor_dtype(spec, shape)
        nbytes = int(np.prod(spec.shape)) * dtype.itemsize
        writer.add_tensor_info(spec.name, spec.shape, dtype, nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for done, data in enumerate(_tensor_data(specs, shape), start=1):
        writer.write_tensor_data(data)
        if progress is not None:
            progress(done, len(specs))
    writer.flush()


def _tensor_data(specs: list[_TensorSpec], shape: ModelShape) -> Iterator[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(shape.seed)
    for spec in specs:
        if spec.is_norm:
            yield np.ones(spec.shape, dtype=np.float32)
            continue
        if shape.router == "pairs" and spec.name.endswith("ffn_gate_inp.weight"):
            yield _paired_router(rng, spec.shape, shape.experts_used) * np.float32(
                shape.router_scale
            )
            continue
        weights = rng.standard_normal(spec.shape, dtype=np.float32) * np.float32(_WEIGHT_SCALE)
        yield weights.astype(_tensor_dtype(spec, shape), copy=False)


def _paired_router(
    rng: np.random.Generator, shape: tuple[int, ...], used: int
) -> np.ndarray[Any, Any]:
    """Router rows v, -v for each of `used` pairs, zero for every other expert: whatever the
    input, each pair has one expert scoring >= 0, so the top `used` are always among the
    first 2 * used experts. Logits have unit scale (the input is RMS-normalised)."""
    width = shape[1]
    rows = np.zeros(shape, dtype=np.float32)
    for pair in range(used):
        v = rng.standard_normal(width, dtype=np.float32) / np.float32(np.sqrt(width))
        rows[2 * pair], rows[2 * pair + 1] = v, -v
    return rows
