"""Local copies: a model registered on another node whose file this node holds too (the same
name in its models or cache directory, or the copy a worker here made of it, of the same
size) is offered under this node as well, so placement may run it here, a split's peer here
fills its RPC cache from the copy instead of receiving the weights over the network, and the
model outlives the node it was registered on. The folders are looked at again whenever the
catalog changes, and with a copies folder every `copies_rescan_s`, so a copy a worker finishes
is offered soon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from meshllm.core import keys
from meshllm.core.lifecycle import LoopComponent
from meshllm.core.model_copies import copy_path
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, LeaseKeeper, PrefixCache, StoreFailure

from .settings import RegistrySettings

logger = logging.getLogger(__name__)


def local_copy(
    name: str, size: int, folders: tuple[Path, ...], copies: Path | None = None
) -> Path | None:
    """`<folder>/<name>.gguf` of the given size in the first folder that has one, else a
    worker's finished copy of that size in `copies`."""
    plain = "/" not in name and not name.startswith(".")
    candidates = [folder / f"{name}.gguf" for folder in folders] if plain else []
    if copies is not None:
        candidates.append(copy_path(copies, name))
    for candidate in candidates:
        try:
            if candidate.is_file() and candidate.stat().st_size == size:
                return candidate
        except OSError:
            continue
    return None


class LocalCopies(LoopComponent):
    def __init__(self, settings: RegistrySettings, store: EtcdStore, lease: LeaseKeeper) -> None:
        self._settings = settings
        self._lease = lease
        self.catalog = PrefixCache(store, keys.catalog(settings.mesh_id), pb.CatalogEntry)
        self._folders = (
            Path(settings.models_dir).expanduser(),
            Path(settings.cache_dir).expanduser(),
        )
        copies = settings.copies_dir
        self._copies = Path(copies).expanduser() if copies else None
        self._offered: set[str] = set()
        self._dirty = asyncio.Event()
        self.catalog.listeners.append(self._dirty.set)

    async def loop(self) -> None:
        await self.catalog.ready.wait()
        while True:
            self._dirty.clear()
            for entry in list(self.catalog.items.values()):
                if entry.name not in self._offered and entry.source.node != self._settings.node:
                    await self._offer(entry)
            # Only a workers' copies folder fills without the catalog changing.
            rescan = self._settings.copies_rescan_s if self._copies is not None else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), rescan)

    async def _offer(self, entry: pb.CatalogEntry) -> None:
        size = entry.facts.file_size_bytes
        path = await asyncio.to_thread(local_copy, entry.name, size, self._folders, self._copies)
        if path is None:
            return
        try:
            await self._lease.publish(
                keys.file_entry(self._settings.mesh_id, entry.name, self._settings.node),
                pb.ModelFile(
                    model=entry.name, node=self._settings.node, path=str(path), size_bytes=size
                ),
            )
        except StoreFailure as exc:
            logger.warning("could not offer the local copy of %s: %s", entry.name, exc)
            return
        self._offered.add(entry.name)
        logger.info("offering this node's copy of %s: %s", entry.name, path)
