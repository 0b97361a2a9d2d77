"""Hostile GGUF headers: whatever the bytes, reading a file's facts gives facts or GgufError
(one line naming the file), never another exception, a hang or a huge allocation."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshllm.registry.gguf_facts import GgufError, read_facts

SCALAR_CODES = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
KEYS = [
    "general.architecture",
    "general.alignment",
    "general.name",
    "general.file_type",
    "llama.block_count",
    "llama.context_length",
    "llama.embedding_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.expert_count",
    "tokenizer.ggml.tokens",
    "tokenizer.chat_template",
]


def string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def value(kind: int, payload: object) -> bytes:
    """A typed value; `payload` is whatever hypothesis drew, coerced or left to be wrong."""
    if kind == 8:
        return string(payload if isinstance(payload, bytes) else str(payload).encode())
    if kind == 9:
        inner, items = payload if isinstance(payload, tuple) else (4, [])
        body = b"".join(value(inner, item) for item in items)
        return struct.pack("<IQ", inner, len(items)) + body
    code = SCALAR_CODES.get(kind, "I")
    try:
        return struct.pack("<" + code, payload)
    except (struct.error, TypeError, OverflowError):
        return struct.pack("<" + code, 0)


scalars = st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(), st.booleans())
kinds = st.sampled_from([*SCALAR_CODES, 8, 9, 13, 255])
kv = st.tuples(
    st.one_of(st.sampled_from(KEYS), st.binary(max_size=12)),
    kinds,
    st.one_of(
        scalars,
        st.binary(max_size=40),
        st.tuples(st.sampled_from([4, 8, 9]), st.lists(st.binary(max_size=4), max_size=6)),
    ),
)
tensor = st.tuples(
    st.binary(max_size=16),
    st.lists(st.integers(0, 2**40), max_size=5),
    st.integers(0, 60),
    st.integers(0, 2**40),
)


def header(
    version: int, kvs: list, tensors: list, tensor_count_lie: int, kv_count_lie: int
) -> bytes:
    out = b"GGUF" + struct.pack("<I", version)
    out += struct.pack("<QQ", len(tensors) + tensor_count_lie, len(kvs) + kv_count_lie)
    for key, kind, payload in kvs:
        out += string(key.encode() if isinstance(key, str) else key)
        out += struct.pack("<I", kind) + value(kind, payload)
    for name, dims, ggml_type, offset in tensors:
        out += string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
    return out


def check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        facts = read_facts(path)
    except GgufError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message
        return
    assert facts.block_count > 0 and facts.architecture


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(
    version=st.sampled_from([2, 3, 0, 1 << 24, 7]),
    kvs=st.lists(kv, max_size=10),
    tensors=st.lists(tensor, max_size=4),
    tensor_count_lie=st.sampled_from([0, 0, 1, 2**62]),
    kv_count_lie=st.sampled_from([0, 0, 1, 2**62]),
    cut=st.integers(0, 100),
)
def test_structured_headers(
    tmp_path: Path,
    version: int,
    kvs: list,
    tensors: list,
    tensor_count_lie: int,
    kv_count_lie: int,
    cut: int,
) -> None:
    data = header(version, kvs, tensors, tensor_count_lie, kv_count_lie)
    check(tmp_path / "fuzz.gguf", data[: max(8, len(data) - cut)] if cut > 90 else data)


@FUZZ
@given(
    st.binary(max_size=600),
    st.lists(st.tuples(st.integers(0, 599), st.integers(0, 255)), max_size=8),
)
def test_mutated_bytes(tmp_path: Path, tail: bytes, flips: list[tuple[int, int]]) -> None:
    base = bytearray(
        header(3, [("general.architecture", 8, b"llama"), ("llama.block_count", 4, 2)], [], 0, 0)
        + tail
    )
    for at, byte in flips:
        if at < len(base):
            base[at] = byte
    check(tmp_path / "mutated.gguf", bytes(base))


def test_nested_arrays_cannot_exhaust_the_stack(tmp_path: Path) -> None:
    depth = 5000
    nested = b"".join(struct.pack("<IQ", 9, 1) for _ in range(depth)) + struct.pack("<IQ", 4, 0)
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + string(b"deep") + struct.pack("<I", 9) + nested
    check(tmp_path / "deep.gguf", data)


def test_an_alignment_that_is_not_a_number(tmp_path: Path) -> None:
    kvs = [
        ("general.architecture", 8, b"llama"),
        ("llama.block_count", 4, 2),
        ("general.alignment", 8, b"wide"),
    ]
    check(tmp_path / "align.gguf", header(3, kvs, [(b"t", [4], 0, 0)], 0, 0))
