from __future__ import annotations

import dataclasses
from pathlib import Path

import gguf
import pytest

from meshllm.cli import make_model
from meshllm.cli.make_model import ModelShape, cached_model, find_vocab_file, write_model

SHAPE = ModelShape(layers=2, embedding=64, feed_forward=96, heads=4, kv_heads=2, context=512)
MOE: dict[str, object] = {"experts": 8, "experts_used": 2}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, vocab_file: Path) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.gguf", SHAPE, vocab_file)


def test_same_seed_is_byte_identical(tmp_path: Path, vocab_file: Path, model: Path) -> None:
    again = write_model(tmp_path / "again.gguf", SHAPE, vocab_file)
    assert again.read_bytes() == model.read_bytes()


def test_different_seed_differs(tmp_path: Path, vocab_file: Path, model: Path) -> None:
    other = write_model(tmp_path / "other.gguf", dataclasses.replace(SHAPE, seed=1), vocab_file)
    assert other.stat().st_size == model.stat().st_size
    assert other.read_bytes() != model.read_bytes()


def test_tensor_names_and_ggml_shapes(model: Path) -> None:
    tensors = {t.name: t for t in gguf.GGUFReader(model).tensors}
    embd, ff, n_vocab = SHAPE.embedding, SHAPE.feed_forward, 32000
    kv_dim = SHAPE.kv_heads * (embd // SHAPE.heads)
    expected = {
        "token_embd.weight": [embd, n_vocab],
        "output_norm.weight": [embd],
        "output.weight": [embd, n_vocab],
        "blk.1.attn_norm.weight": [embd],
        "blk.1.attn_q.weight": [embd, embd],
        "blk.1.attn_k.weight": [embd, kv_dim],
        "blk.1.attn_v.weight": [embd, kv_dim],
        "blk.1.attn_output.weight": [embd, embd],
        "blk.1.ffn_norm.weight": [embd],
        "blk.1.ffn_gate.weight": [embd, ff],
        "blk.1.ffn_up.weight": [embd, ff],
        "blk.1.ffn_down.weight": [ff, embd],
    }
    for name, ne in expected.items():
        assert tensors[name].shape.tolist() == ne, name
    assert len(tensors) == 3 + 9 * SHAPE.layers


def test_metadata_and_tokenizer_copied(model: Path, vocab_file: Path) -> None:
    fields = gguf.GGUFReader(model).fields
    vocab = gguf.GGUFReader(vocab_file).fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["general.name"].contents() == SHAPE.name
    assert fields["llama.rope.dimension_count"].contents() == SHAPE.embedding // SHAPE.heads
    assert fields["llama.vocab_size"].contents() == 32000
    for key in (k for k in vocab if k.startswith("tokenizer.")):
        assert fields[key].types == vocab[key].types, key
        assert fields[key].contents() == vocab[key].contents(), key
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()


def test_f16_keeps_norms_in_f32(tmp_path: Path, vocab_file: Path) -> None:
    shape = dataclasses.replace(SHAPE, dtype="f16", layers=1)
    types = {
        t.name: t.tensor_type
        for t in gguf.GGUFReader(write_model(tmp_path / "h.gguf", shape, vocab_file)).tensors
    }
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32


def test_progress_reports_every_tensor(tmp_path: Path, vocab_file: Path) -> None:
    calls: list[tuple[int, int]] = []
    shape = dataclasses.replace(SHAPE, layers=1)
    write_model(tmp_path / "p.gguf", shape, vocab_file, progress=lambda d, t: calls.append((d, t)))
    total = 3 + 9 * shape.layers
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_failed_write_leaves_nothing(tmp_path: Path, vocab_file: Path) -> None:
    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        write_model(tmp_path / "x.gguf", SHAPE, vocab_file, progress=fail)
    assert list(tmp_path.iterdir()) == []


def test_cache_key_is_stable_and_covers_fields() -> None:
    assert SHAPE.cache_key() == dataclasses.replace(SHAPE).cache_key()
    keys = {dataclasses.replace(SHAPE, **{f: v}).cache_key() for f, v in _one_change_each()}
    assert len(keys) == len(_one_change_each())
    assert SHAPE.cache_key() not in keys


def test_invalid_shapes_rejected() -> None:
    for change in ({"heads": 3}, {"kv_heads": 3}, {"dtype": "q4"}, {"layers": 0}, {"name": "a/b"}):
        with pytest.raises(ValueError):
            dataclasses.replace(SHAPE, **change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "qwen3moe"}, "architecture must be one of \\['llama'\\]"),
        ({**MOE, "architecture": "deepseek2"}, "architecture must be one of"),
        ({**MOE, "router": "pairs", "router_scale": 0.0}, "router_scale must be positive"),
    ],
)
def test_mixture_layouts_are_checked(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SHAPE, **change)


def test_fields_added_later_keep_earlier_cache_keys() -> None:
    moe = dataclasses.replace(SHAPE, **MOE)
    same = dataclasses.replace(moe, architecture="llama", router_scale=1.0)
    assert same.cache_key() == moe.cache_key()
    for change in ({"architecture": "qwen2moe"}, {"router_scale": 4.0}):
        assert dataclasses.replace(moe, **change).cache_key() != moe.cache_key()


def test_cached_model_reuses_file(
    tmp_path: Path, vocab_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_MODEL_CACHE", str(tmp_path))
    path = cached_model(SHAPE, vocab_file=vocab_file)
    assert path == tmp_path / f"{SHAPE.name}-{SHAPE.cache_key()}.gguf"

    def no_write(*args: object, **kwargs: object) -> Path:
        raise AssertionError("cached model was regenerated")

    monkeypatch.setattr(make_model, "write_model", no_write)
    assert cached_model(SHAPE, vocab_file=vocab_file) == path


def test_find_vocab_file_uses_env_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ggml-vocab-llama-spm.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MESH_VOCAB_DIR", str(tmp_path))
    assert find_vocab_file("llama-spm") == tmp_path / "ggml-vocab-llama-spm.gguf"


def test_find_vocab_file_uses_llama_cpp_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = tmp_path / ".cache" / "mesh-llm" / "llama.cpp"
    for build in ("b-cuda", "a-cpu"):
        (builds / build / "vocab").mkdir(parents=True)
        (builds / build / "vocab" / "ggml-vocab-gpt-2.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MESH_VOCAB_DIR", raising=False)
    assert find_vocab_file("gpt-2") == builds / "a-cpu" / "vocab" / "ggml-vocab-gpt-2.gguf"


def test_find_vocab_file_missing_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MESH_VOCAB_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        find_vocab_file("llama-spm")
    assert "make llama" in str(err.value)
    assert "MESH_VOCAB_DIR" in str(err.value)


def _one_change_each() -> list[tuple[str, object]]:
    return [
        ("layers", 3),
        ("embedding", 128),
        ("feed_forward", 128),
        ("heads", 8),
        ("kv_heads", 4),
        ("context", 1024),
        ("vocab", "gpt-2"),
        ("dtype", "f16"),
        ("seed", 7),
        ("name", "other"),
    ]
