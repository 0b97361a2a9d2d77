"""Copying GGUF metadata from a file read with gguf-py's GGUFReader into a GGUFWriter, value
for value and type for type (used for generated models and for MoE shards)."""

from __future__ import annotations

from typing import Any

import gguf
from gguf.gguf_reader import ReaderField

# Keys GGUFReader reports that are the file's framing, not metadata: a writer makes its own.
FRAMING_KEYS = frozenset({"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"})


def copy_field(writer: gguf.GGUFWriter, key: str, field: ReaderField) -> None:
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
