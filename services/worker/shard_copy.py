"""A worker's copy of the expert shard its assignment names. The registry that holds the
model's file writes and measures the shard (PrepareShard); on that same node the worker
runs it where it lies, elsewhere it streams it over (ReadShard) into its shard folder: into a
`.part` file that a broken transfer resumes from, checked against the SHA-256 the registry
recorded before it is renamed into place. A copy already checked is reused."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from meshllm.core import keys
from meshllm.core.clients import RegistryClient
from meshllm.core.digest import file_sha256
from meshllm.core.errors import NotFound, Unavailable, UpstreamError
from meshllm.core.pki import Credentials
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

logger = logging.getLogger(__name__)
ATTEMPTS = 5  # transfers tried (each resuming the last) before giving up for now
Progress = Callable[[str, int, int], None]  # (stage, done, total)
T = TypeVar("T")


@dataclass(frozen=True)
class ShardSource:
    store: EtcdStore
    mesh: str
    node: str  # this node
    credentials: Credentials | None


async def file_node(source: ShardSource, model: str) -> str:
    """A node whose registry holds the model's file: this one when it does."""
    files, _ = await source.store.get_prefix(keys.files(source.mesh, model), pb.ModelFile)
    nodes = sorted(f.node for f in files.values())
    if not nodes:
        raise NotFound(f"no registry in the mesh holds the file of '{model}'")
    return source.node if source.node in nodes else nodes[0]


async def obtain_shard(
    source: ShardSource, model: str, spec: pb.ShardSpec, folder: Path, progress: Progress
) -> Path:
    """The path of the shard on this node, written (and measured) by the registry that holds
    the model, copied here when that registry is on another node. Refused when the shard
    fails the quality gate."""
    holder = await file_node(source, model)
    async with await RegistryClient.discover(
        source.store, source.mesh, holder, source.credentials, only_node=True
    ) as registry:
        record, there = pb.ShardRecord(), ""
        async for step in registry.prepare_shard(model, spec):
            if step.stage == "ready":
                record, there = step.record, step.path
            else:
                progress(step.stage, step.done, step.total)
        if holder == source.node and Path(there).is_file():
            return Path(there)
        dest = folder / quote(model, safe="") / f"{spec.shard_id}.gguf"
        await download(registry, model, record, dest, progress)
        return dest


async def download(
    registry: RegistryClient, model: str, record: pb.ShardRecord, dest: Path, progress: Progress
) -> None:
    if await asyncio.to_thread(_checked_copy, dest, record):
        return
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)

    async def transfer() -> None:
        offset = part.stat().st_size if part.exists() else 0
        if offset > record.size_bytes:
            part.unlink()
            offset = 0
        await _fetch(registry, model, record, part, offset, progress)

    await with_resumes(transfer, part, f"shard {record.spec.shard_id} of {model}")
    digest = await asyncio.to_thread(file_sha256, part)
    if digest != record.sha256:
        part.unlink()
        raise UpstreamError(
            f"the copy of shard {record.spec.shard_id} of {model} does not match its checksum"
        )
    os.replace(part, dest)
    dest.with_name(dest.name + ".sha256").write_text(digest)


class StartOver(Exception):
    """The partial copy is of another file: the next attempt starts from nothing, at once."""


async def with_resumes(transfer: Callable[[], Awaitable[T]], part: Path, what: str) -> T:
    """`transfer()`, which resumes from the `part` file, tried ATTEMPTS times in all: again
    after a broken transfer (Unavailable), with a doubling pause; again at once after
    StartOver."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await transfer()
        except StartOver:
            logger.info("%s: the source changed during the transfer; starting over", what)
        except Unavailable as exc:
            if attempt == ATTEMPTS:
                raise
            done = part.stat().st_size if part.exists() else 0
            logger.info("%s: transfer broke at %d bytes (%s); resuming", what, done, exc.message)
            await asyncio.sleep(min(2.0**attempt, 30.0))
    raise Unavailable(f"{what} kept changing while it was copied")


async def _fetch(
    registry: RegistryClient,
    model: str,
    record: pb.ShardRecord,
    part: Path,
    offset: int,
    progress: Progress,
) -> None:
    size = record.size_bytes
    with part.open("ab") as out:
        async for chunk in registry.read_shard(model, record.spec.shard_id, offset):
            if chunk.offset != offset or chunk.size_bytes != size:
                raise UpstreamError(f"shard {record.spec.shard_id} of {model} came out of order")
            out.write(chunk.data)
            offset += len(chunk.data)
            progress("copying", offset, size)
    if offset != size:
        raise Unavailable(f"the transfer ended at {offset} of {size} bytes")


def _checked_copy(dest: Path, record: pb.ShardRecord) -> bool:
    """A copy finished before: its size and the checksum it was checked against match."""
    mark = dest.with_name(dest.name + ".sha256")
    try:
        return dest.stat().st_size == record.size_bytes and mark.read_text() == record.sha256
    except OSError:
        return False


class LoggedProgress:
    """Progress of a shard on its way, logged at every tenth."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._shown: tuple[str, int] = ("", -1)

    def __call__(self, stage: str, done: int, total: int) -> None:
        tenth = done * 10 // total if total else 0
        if (stage, tenth) == self._shown:
            return
        self._shown = (stage, tenth)
        if total:
            logger.info("%s: %s %d%% (%.1f of %.1f MB)", self.label, stage, tenth * 10,
                        done / 1e6, total / 1e6)  # fmt: skip
        else:
            logger.info("%s: %s", self.label, stage)
