"""A worker's copy of a model file that only other nodes hold (a model registered from a
local path there): streamed from a registry that holds it (ReadModel) into a `.part` file
that a broken transfer resumes from, kept only while the source is the same file (its
version: size and modification time; a changed source starts the copy over), checked as a
whole GGUF, then renamed into place. A finished copy is reused while its source's version
is unchanged."""

from __future__ import annotations

import asyncio
import os
from contextlib import aclosing
from pathlib import Path

from meshllm.core.clients import RegistryClient
from meshllm.core.errors import InvalidRequest, Unavailable, UpstreamError
from meshllm.core.gguf_header import HeaderError, read_header
from meshllm.core.model_copies import copy_path

from .shard_copy import Progress, ShardSource, StartOver, file_node, with_resumes


async def obtain_model_copy(
    source: ShardSource, model: str, folder: Path, progress: Progress
) -> Path:
    """This node's copy of the model's file, made (or checked) from a registry holding it."""
    holder = await file_node(source, model)
    dest = copy_path(folder, model)
    async with await RegistryClient.discover(
        source.store, source.mesh, holder, source.credentials, only_node=True
    ) as registry:
        if not await _still_current(registry, model, dest):
            await copy_model(registry, model, dest, progress)
    return dest


async def copy_model(registry: RegistryClient, model: str, dest: Path, progress: Progress) -> None:
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)

    async def transfer() -> str:
        known = _version_of(part)
        offset = part.stat().st_size if known and part.exists() else 0
        return await _fetch(registry, model, part, offset, known, progress)

    version = await with_resumes(transfer, part, f"the file of {model}")
    try:
        await asyncio.to_thread(read_header, part)
    except (HeaderError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise UpstreamError(f"the copy of {model} is not a whole GGUF: {exc}") from None
    os.replace(part, dest)
    _version_path(dest).write_text(version)
    _version_path(part).unlink(missing_ok=True)


async def _fetch(
    registry: RegistryClient,
    model: str,
    part: Path,
    offset: int,
    known: str,
    progress: Progress,
) -> str:
    """Appends the file's bytes from `offset` to `part` (a fresh part when 0) and returns
    the source's version; StartOver (its version mark dropped) when it is not `known`."""
    with part.open("ab" if offset else "wb") as out:
        async for chunk in registry.read_model(model, offset):
            if known and chunk.version != known:
                _version_path(part).unlink(missing_ok=True)
                raise StartOver
            if not known:
                known = chunk.version
                _version_path(part).write_text(known)
            if chunk.offset != offset:
                raise UpstreamError(f"the file of {model} came out of order")
            if not chunk.data:
                if offset != chunk.size_bytes:
                    raise UpstreamError(f"the file of {model} ended at {offset} bytes")
                return known
            out.write(chunk.data)
            offset += len(chunk.data)
            progress("copying", offset, chunk.size_bytes)
    raise Unavailable(f"the transfer of {model} ended at {offset} bytes, before the file did")


async def _still_current(registry: RegistryClient, model: str, dest: Path) -> bool:
    """A finished copy whose source has the version it was copied at."""
    version = _version_of(dest)
    if not version or not dest.is_file():
        return False
    try:
        async with aclosing(registry.read_model(model, dest.stat().st_size)) as chunks:
            async for chunk in chunks:
                return chunk.version == version and chunk.size_bytes == dest.stat().st_size
    except InvalidRequest:  # the copy is longer than the file is now
        return False
    return False


def _version_path(path: Path) -> Path:
    return path.with_name(path.name + ".version")


def _version_of(path: Path) -> str:
    try:
        return _version_path(path).read_text()
    except OSError:
        return ""
