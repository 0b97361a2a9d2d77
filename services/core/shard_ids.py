"""The identity of an expert shard: its model and the experts it keeps in every layer,
hashed. The scheduler names shards by it, the registry caches them under it, and a worker
finds its copy by it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def shard_id(model: str, layers: Sequence[Sequence[int]]) -> str:
    text = model + "\n" + "\n".join(",".join(map(str, sorted(layer))) for layer in layers)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def is_shard_id(value: str) -> bool:
    """What shard_id makes (a safe file name too)."""
    return len(value) == 20 and all(c in "0123456789abcdef" for c in value)
