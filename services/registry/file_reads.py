"""A file's bytes from an offset on, in chunks, read off the event loop: what ReadShard and
ReadModel stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from meshllm.core.errors import InvalidRequest, Unavailable

CHUNK = 1 << 20  # bytes per message


async def chunks_of(
    path: Path, offset: int, size: int, what: str
) -> AsyncIterator[tuple[int, bytes]]:
    """(offset, bytes) from `offset` to `size`; `what` names the file in errors."""
    if offset > size:
        raise InvalidRequest(f"offset {offset} is past the end of {what} ({size})", param="offset")
    with path.open("rb") as f:
        f.seek(offset)
        while offset < size:
            data = await asyncio.to_thread(f.read, min(CHUNK, size - offset))
            if not data:
                raise Unavailable(f"{what} ended early on disk")
            yield offset, data
            offset += len(data)
