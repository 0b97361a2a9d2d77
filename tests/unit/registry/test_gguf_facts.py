from __future__ import annotations

import dataclasses
from pathlib import Path

import gguf
import numpy as np
import pytest

from meshllm.cli.make_model import ModelShape, write_model
from meshllm.registry.gguf_facts import GgufError, GgufFacts, read_facts

SHAPE = ModelShape(layers=3, embedding=64, feed_forward=96, heads=4, kv_heads=2, context=1024)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def f32_model(model_dir: Path, vocab_file: Path) -> Path:
    return write_model(model_dir / "tiny-f32.gguf", SHAPE, vocab_file)


@pytest.fixture(scope="module")
def f32_facts(f32_model: Path) -> GgufFacts:
    return read_facts(f32_model)


def test_facts_match_generated_shape(f32_model: Path, f32_facts: GgufFacts) -> None:
    facts = f32_facts
    assert facts.path == str(f32_model)
    assert facts.architecture == "llama"
    assert facts.name == SHAPE.name
    assert facts.block_count == SHAPE.layers
    assert facts.embedding_length == SHAPE.embedding
    assert facts.feed_forward_length == SHAPE.feed_forward
    assert facts.head_count == SHAPE.heads
    assert facts.head_count_kv == SHAPE.kv_heads
    assert facts.context_length == SHAPE.context
    assert facts.vocab_size == 32000
    assert facts.file_type == "F32"
    assert facts.file_size == f32_model.stat().st_size
    assert 0 < facts.tensor_bytes < facts.file_size
    assert facts.has_chat_template
    assert not facts.is_moe
    assert (facts.expert_count, facts.expert_used_count) == (0, 0)
    assert facts.expert_tensor_bytes == 0
    assert not facts.vision
    assert not facts.audio


def test_a_mixture_reports_its_experts_and_their_bytes(model_dir: Path, vocab_file: Path) -> None:
    shape = dataclasses.replace(SHAPE, experts=4, experts_used=2)
    facts = read_facts(write_model(model_dir / "tiny-moe.gguf", shape, vocab_file))
    assert facts.is_moe and (facts.expert_count, facts.expert_used_count) == (4, 2)
    per_layer = 4 * (3 * SHAPE.feed_forward * SHAPE.embedding + SHAPE.embedding) * 4  # f32
    assert facts.expert_tensor_bytes == SHAPE.layers * per_layer
    assert facts.expert_tensor_bytes < facts.tensor_bytes


def test_f16_model_reports_f16_file_type(model_dir: Path, vocab_file: Path) -> None:
    shape = dataclasses.replace(SHAPE, dtype="f16")
    facts = read_facts(write_model(model_dir / "tiny-f16.gguf", shape, vocab_file))
    assert facts.file_type == "F16"


def test_kv_cache_bytes_formula(f32_facts: GgufFacts) -> None:
    head_dim = SHAPE.embedding // SHAPE.heads
    expected = 2 * SHAPE.layers * 512 * SHAPE.kv_heads * head_dim * 2
    assert f32_facts.kv_cache_bytes(512) == expected
    assert f32_facts.kv_cache_bytes(512, bytes_per_element=1) == expected // 2


def test_kv_cache_bytes_without_heads_is_zero(f32_facts: GgufFacts) -> None:
    assert dataclasses.replace(f32_facts, head_count_kv=0).kv_cache_bytes(512) == 0


def test_head_sizes_default_to_width_over_heads(f32_facts: GgufFacts) -> None:
    head_dim = SHAPE.embedding // SHAPE.heads
    assert (f32_facts.head_dim_k, f32_facts.head_dim_v) == (head_dim, head_dim)


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b"root:*:20000:0:99999:7:::\n", ""),
        (b"hello world, this is text\n", ""),
        (b"  <!DOCTYPE html><html>Not found</html>", " (it looks like an HTML or XML page"),
        (b'{"error": "gated"}', " (it looks like JSON)"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab", " (it is a Git LFS pointer"),
    ],
)
def test_a_file_that_is_not_gguf_is_named_never_quoted(
    tmp_path: Path, content: bytes, hint: str
) -> None:
    path = tmp_path / "notes.gguf"
    path.write_bytes(content)
    with pytest.raises(GgufError) as err:
        read_facts(path)
    message = str(err.value)
    assert message.startswith(f"{path} is not a GGUF file{hint}")
    assert content.decode()[:4].strip() not in message.replace(str(path), "")
    assert "\n" not in message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    _assert_gguf_error(path, "empty")


def test_missing_path(tmp_path: Path) -> None:
    _assert_gguf_error(tmp_path / "nope.gguf", "does not exist")


def test_directory(tmp_path: Path) -> None:
    _assert_gguf_error(tmp_path, "directory")


def test_truncated_halfway(f32_model: Path, tmp_path: Path) -> None:
    data = f32_model.read_bytes()
    path = tmp_path / "half.gguf"
    path.write_bytes(data[: len(data) // 2])
    _assert_gguf_error(path, "truncated or corrupt")


def test_truncated_inside_header(f32_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "header.gguf"
    path.write_bytes(f32_model.read_bytes()[:64])
    _assert_gguf_error(path, "truncated or corrupt")


def test_unsupported_gguf_version(f32_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    data = bytearray(f32_model.read_bytes()[:4096])
    data[4:8] = (1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    _assert_gguf_error(path, "GGUF version 1")


def test_missing_architecture(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "noarch.gguf", "")
    _assert_gguf_error(path, "general.architecture")


def test_architecture_without_block_count(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "odd.gguf", "mystery", {"mystery.context_length": 4})
    _assert_gguf_error(path, "unsupported")


def test_defaults_for_optional_keys(tmp_path: Path) -> None:
    keys = {"llama.block_count": 2, "llama.embedding_length": 64, "llama.attention.head_count": 8}
    facts = read_facts(_write_gguf(tmp_path / "bare.gguf", "llama", keys))
    assert facts.name == "bare"
    assert facts.head_count_kv == 8
    assert (facts.context_length, facts.feed_forward_length, facts.vocab_size) == (0, 0, 0)
    assert facts.file_type == ""
    assert not facts.has_chat_template


def test_vocab_size_from_architecture_key(tmp_path: Path) -> None:
    keys = {"llama.block_count": 2, "llama.vocab_size": 500}
    assert read_facts(_write_gguf(tmp_path / "v.gguf", "llama", keys)).vocab_size == 500


def test_mixture_of_experts(tmp_path: Path) -> None:
    keys = {"mixtral.block_count": 2, "mixtral.expert_count": 8, "mixtral.expert_used_count": 2}
    facts = read_facts(_write_gguf(tmp_path / "moe.gguf", "mixtral", keys))
    assert facts.is_moe
    assert (facts.expert_count, facts.expert_used_count) == (8, 2)


def test_vision_and_audio_tensor_hints(tmp_path: Path) -> None:
    tensors = ["token_embd.weight", "v.patch_embd.weight", "a.conv1d.0.weight"]
    path = _write_gguf(tmp_path / "omni.gguf", "llama", {"llama.block_count": 1}, tensors)
    facts = read_facts(path)
    assert facts.vision
    assert facts.audio
    assert facts.tensor_bytes == 3 * 4 * 4


def test_projector_file_is_vision_only(tmp_path: Path) -> None:
    keys = {
        "clip.vision.block_count": 12,
        "clip.has_vision_encoder": True,
        "clip.has_audio_encoder": False,
    }
    facts = read_facts(_write_gguf(tmp_path / "mmproj.gguf", "clip", keys, ["mm.0.weight"]))
    assert facts.block_count == 12
    assert facts.vision
    assert not facts.audio


def test_smollm2_real_model(chat_model: Path) -> None:
    facts = read_facts(chat_model)
    assert facts.architecture == "llama"
    assert facts.file_type == "Q4_1"
    assert facts.has_chat_template
    assert facts.block_count == 30
    assert facts.vocab_size == 49152
    assert facts.tensor_bytes <= facts.file_size


def _assert_gguf_error(path: Path, fragment: str) -> None:
    with pytest.raises(GgufError) as err:
        read_facts(path)
    message = str(err.value)
    assert str(path) in message
    assert fragment in message
    assert "\n" not in message


def _write_gguf(
    path: Path,
    arch: str,
    keys: dict[str, int | bool] | None = None,
    tensors: list[str] | None = None,
) -> Path:
    # GGUFWriter skips empty strings, so arch="" writes a file with no general.architecture.
    writer = gguf.GGUFWriter(path, arch)
    try:
        for key, value in (keys or {}).items():
            _add_key(writer, key, value)
        for name in tensors or []:
            writer.add_tensor(name, np.zeros((4,), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def _add_key(writer: gguf.GGUFWriter, key: str, value: int | bool) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    else:
        writer.add_uint32(key, value)
