"""Facts about a GGUF model file, read from its header without loading tensor data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
from gguf.gguf_reader import READER_SUPPORTED_VERSIONS

from meshllm.core.gguf_header import GgufArray, GgufHeader, read_header

from .shards import is_per_expert

GGUF_MAGIC = b"GGUF"
_HEAD_BYTES = 64  # enough for the version and a hint at what a non-GGUF file is
# Projector files (mmproj) keep their per-encoder keys under these prefixes.
_CLIP_PREFIXES = ("clip.vision", "clip.audio")
_VISION_ARCHS = frozenset({"clip", "mmproj"})


class GgufError(ValueError):
    """A file could not be read as a usable GGUF model."""


@dataclass(frozen=True)
class GgufFacts:
    path: str
    architecture: str
    name: str
    file_size: int
    block_count: int
    context_length: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    head_dim_k: int
    head_dim_v: int
    feed_forward_length: int
    expert_count: int
    expert_used_count: int
    vocab_size: int
    file_type: str
    has_chat_template: bool
    vision: bool
    audio: bool
    tensor_bytes: int
    expert_tensor_bytes: int = 0  # the per-expert tensors': what expert shards divide

    @property
    def is_moe(self) -> bool:
        return self.expert_count > 0

    def kv_cache_bytes(self, context: int, bytes_per_element: int = 2) -> int:
        """Bytes the K and V caches take for `context` tokens across all layers."""
        per_head = self.head_dim_k + self.head_dim_v
        return self.block_count * context * self.head_count_kv * per_head * bytes_per_element


def read_facts(path: str | os.PathLike[str]) -> GgufFacts:
    """Read the facts of the GGUF file at `path`; raise GgufError if it is not a usable model."""
    file = Path(path)
    size = _check_file(file)
    header = _open_header(file, size)
    meta = _Meta(file, header.fields)
    arch = meta.string("general.architecture")
    if not arch:
        raise GgufError(f"{file} has no general.architecture key; it is not a model file")
    keys = _ArchKeys(meta, arch)
    block_count = keys.integer("block_count")
    if block_count <= 0:
        raise GgufError(f"{file} has unsupported architecture {arch!r}: no {arch}.block_count key")
    head_count = keys.integer("attention.head_count")
    head_dim = keys.integer("embedding_length") // head_count if head_count else 0
    tensor_names = [t.name for t in header.tensors]
    return GgufFacts(
        path=str(file),
        architecture=arch,
        name=meta.string("general.name") or file.stem,
        file_size=size,
        block_count=block_count,
        context_length=keys.integer("context_length"),
        embedding_length=keys.integer("embedding_length"),
        head_count=head_count,
        head_count_kv=keys.integer("attention.head_count_kv") or head_count,
        head_dim_k=keys.integer("attention.key_length") or head_dim,
        head_dim_v=keys.integer("attention.value_length") or head_dim,
        feed_forward_length=keys.integer("feed_forward_length"),
        expert_count=keys.integer("expert_count"),
        expert_used_count=keys.integer("expert_used_count"),
        vocab_size=_vocab_size(meta, keys),
        file_type=_file_type_name(meta.get("general.file_type")),
        has_chat_template="tokenizer.chat_template" in meta.fields,
        vision=_has_vision(meta, arch, tensor_names),
        audio=_has_audio(meta, tensor_names),
        tensor_bytes=sum(t.n_bytes for t in header.tensors),
        expert_tensor_bytes=sum(t.n_bytes for t in header.tensors if is_per_expert(t.name)),
    )


def _check_file(file: Path) -> int:
    if not file.exists():
        raise GgufError(f"{file} does not exist; check the model path")
    if file.is_dir():
        raise GgufError(f"{file} is a directory; pass the .gguf file inside it")
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise GgufError(f"{file} cannot be read: {exc.strerror or exc}") from exc
    if size == 0:
        raise GgufError(f"{file} is empty; re-download or regenerate it")
    if not head.startswith(GGUF_MAGIC):
        raise GgufError(f"{file} is not a GGUF file{_looks_like(head)}; pass a .gguf model file")
    _check_version(file, head)
    return size


def _check_version(file: Path, head: bytes) -> None:
    raw = head[4:8]
    if len(raw) < 4:
        return  # too short to hold a version; the reader reports the truncation
    version = int.from_bytes(raw, "little")
    if version & 0xFFFF == 0:
        version = int.from_bytes(raw, "big")  # written on a big-endian machine
    if version not in READER_SUPPORTED_VERSIONS:
        raise GgufError(
            f"{file} uses GGUF version {version}, which is not supported; "
            "convert it again with a current llama.cpp"
        )


def _looks_like(head: bytes) -> str:
    """A hint at what a file that is not GGUF holds, without quoting it (an error may travel
    to another node, and the file may be anything)."""
    start = head.lstrip()[:1]
    if start == b"<":
        return " (it looks like an HTML or XML page: a failed download?)"
    if start in (b"{", b"["):
        return " (it looks like JSON)"
    if head.startswith(b"version https://git-lfs"):
        return " (it is a Git LFS pointer: fetch the real file with git lfs pull)"
    return ""


def _open_header(file: Path, size: int) -> GgufHeader:
    try:
        header = read_header(file)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise _truncated(file, _describe(exc)) from exc
    if header.tensors and header.data_offset > size:
        raise _truncated(file, "the header ends past the end of the file")
    for tensor in header.tensors:
        end = tensor.offset + tensor.n_bytes
        if end > size:
            detail = f"tensor {tensor.name} ends at byte {end} but the file has {size} bytes"
            raise _truncated(file, detail)
    return header


def _truncated(file: Path, detail: str) -> GgufError:
    return GgufError(f"{file} is truncated or corrupt: {detail}; re-download or regenerate it")


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class _Meta:
    file: Path
    fields: Mapping[str, Any]

    def get(self, key: str) -> Any:
        value = self.fields.get(key)
        return value.values if isinstance(value, GgufArray) else value

    def string(self, key: str) -> str:
        value = self.get(key)
        return value if isinstance(value, str) else ""

    def integer(self, key: str) -> int | None:
        value = self.get(key)
        if isinstance(value, list):
            # Some architectures store per-layer values; the largest one bounds memory use.
            value = max(value, default=None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)


@dataclass(frozen=True)
class _ArchKeys:
    """Looks up `<arch>.<suffix>` keys, falling back to projector-specific prefixes."""

    meta: _Meta
    arch: str

    def integer(self, suffix: str) -> int:
        prefixes = (self.arch, *_CLIP_PREFIXES) if self.arch == "clip" else (self.arch,)
        for prefix in prefixes:
            value = self.meta.integer(f"{prefix}.{suffix}")
            if value is not None:
                return value
        return 0


def _vocab_size(meta: _Meta, keys: _ArchKeys) -> int:
    tokens = meta.fields.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GgufArray):
        return tokens.length
    return keys.integer("vocab_size")


def _file_type_name(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return f"TYPE_{value}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _has_vision(meta: _Meta, arch: str, tensor_names: list[str]) -> bool:
    if arch in _VISION_ARCHS and meta.get("clip.has_vision_encoder") is not False:
        return True
    if _key_hint(meta, "vision"):
        return True
    return any(_is_vision_tensor(name) for name in tensor_names)


def _has_audio(meta: _Meta, tensor_names: list[str]) -> bool:
    if _key_hint(meta, "audio"):
        return True
    return any(name.startswith(("a.", "mm.a.")) for name in tensor_names)


def _is_vision_tensor(name: str) -> bool:
    return name.startswith("v.") or (name.startswith("mm.") and not name.startswith("mm.a."))


def _key_hint(meta: _Meta, word: str) -> bool:
    # A flag such as clip.has_audio_encoder=false is a hint against the modality, not for it.
    return any(value is not False for key, value in meta.fields.items() if word in key)
