"""A fast reader for GGUF headers: metadata and tensor table, never tensor data.

gguf-py's GGUFReader builds a numpy view per array element, which takes seconds on a
tokenizer with 50k tokens; model facts need only the array lengths. Long arrays are
therefore skipped (strings by walking their lengths, numbers by arithmetic), and only
short ones are decoded. Any read past the end raises HeaderError.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

MAX_DECODED_ARRAY = 4096
MAX_NESTING = 4  # arrays of arrays: real files use one level; a hostile one could use thousands
DEFAULT_ALIGNMENT = 32

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}


class HeaderError(ValueError):
    """The header is cut short or malformed."""


@dataclass(frozen=True)
class GgufArray:
    item_type: GGUFValueType
    length: int
    values: list[Any] | None  # None when longer than MAX_DECODED_ARRAY


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute, in the file
    n_bytes: int


@dataclass(frozen=True)
class GgufHeader:
    version: int
    fields: dict[str, Any]  # scalars, str, or GgufArray
    tensors: list[TensorInfo]
    data_offset: int
    kv_span: tuple[int, int] = (0, 0)  # where the metadata's bytes lie in the file
    # where each scalar's value lies, and its struct code (for rewriting it in a copy)
    scalar_at: dict[str, tuple[int, str]] = field(default_factory=dict)
    alignment: int = DEFAULT_ALIGNMENT
    little_endian: bool = True


class _Cursor:
    def __init__(self, buffer: memoryview, order: str) -> None:
        self.buffer = buffer
        self.order = order
        self.pos = 0
        self.depth = 0

    def take(self, size: int) -> memoryview:
        end = self.pos + size
        if size < 0 or end > len(self.buffer):
            raise HeaderError(f"header needs byte {end} but the file has {len(self.buffer)}")
        chunk = self.buffer[self.pos : end]
        self.pos = end
        return chunk

    def scalar(self, code: str) -> Any:
        return struct.unpack(self.order + code, self.take(struct.calcsize(code)))[0]

    def string(self) -> str:
        return bytes(self.take(self.scalar("Q"))).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.take(self.scalar("Q"))

    def value(self, kind: GGUFValueType) -> Any:
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            return self.array()
        if kind not in _SCALARS:
            raise HeaderError(f"unknown value type {int(kind)}")
        return self.scalar(_SCALARS[kind])

    def array(self) -> GgufArray:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise HeaderError(f"arrays nested more than {MAX_NESTING} deep")
            return self._array()
        finally:
            self.depth -= 1

    def _array(self) -> GgufArray:
        item = _value_type(self.scalar("I"))
        length = self.scalar("Q")
        if length <= MAX_DECODED_ARRAY:
            return GgufArray(item, length, [self.value(item) for _ in range(length)])
        if item == GGUFValueType.STRING:
            for _ in range(length):
                self.skip_string()
        elif item in _SCALARS:
            self.take(length * struct.calcsize(_SCALARS[item]))
        else:
            for _ in range(length):
                self.value(item)
        return GgufArray(item, length, None)


def _value_type(raw: int) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError as exc:
        raise HeaderError(f"unknown value type {raw}") from exc


def tensor_bytes(dims: tuple[int, ...], ggml_type: int) -> int:
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as exc:
        raise HeaderError(f"unknown tensor type {ggml_type}") from exc
    count = 1
    for d in dims:
        count *= d
    return count // block * size


def read_header(path: Path) -> GgufHeader:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            return _parse(view)
        finally:
            view.release()


def _parse(view: memoryview) -> GgufHeader:
    order = "<"
    if bytes(view[:4]) != b"GGUF":
        raise HeaderError("no GGUF magic")
    cursor = _Cursor(view, order)
    cursor.take(4)
    version = cursor.scalar("I")
    if version & 0xFFFF == 0:  # written on a big-endian machine
        cursor.order = order = ">"
        version = struct.unpack(">I", view[4:8])[0]
    tensor_count, kv_count = cursor.scalar("Q"), cursor.scalar("Q")
    fields: dict[str, Any] = {}
    scalar_at: dict[str, tuple[int, str]] = {}
    kv_start = cursor.pos
    for _ in range(kv_count):
        key = cursor.string()
        kind = _value_type(cursor.scalar("I"))
        if kind in _SCALARS:
            scalar_at[key] = (cursor.pos, _SCALARS[kind])
        fields[key] = cursor.value(kind)
    kv_end = cursor.pos
    infos = []
    for _ in range(tensor_count):
        name = cursor.string()
        dims = tuple(cursor.scalar("Q") for _ in range(cursor.scalar("I")))
        infos.append((name, dims, cursor.scalar("I"), cursor.scalar("Q")))
    alignment = fields.get("general.alignment", DEFAULT_ALIGNMENT) or DEFAULT_ALIGNMENT
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 0:
        raise HeaderError(f"general.alignment is {str(alignment)[:20]!r}, not a positive number")
    data_offset = -(-cursor.pos // alignment) * alignment
    tensors = [TensorInfo(n, d, t, data_offset + o, tensor_bytes(d, t)) for n, d, t, o in infos]
    return GgufHeader(
        version, fields, tensors, data_offset, (kv_start, kv_end), scalar_at, alignment,
        little_endian=order == "<",
    )  # fmt: skip
