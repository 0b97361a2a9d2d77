"""Expert rankings in the store: for every mixture of experts registered from this node's
files, the registry ranks the experts in the background (one model at a time: it is a full
pass of the model over the calibration text) and writes the ranking under
`/experts/<model>`, where placement reads it. A ranking older than the model's registration
is redone, so a file registered again is ranked again; on restart, what is missing is done."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from meshllm.core import keys
from meshllm.core.binaries import llama_tool
from meshllm.core.lifecycle import LoopComponent
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, PrefixCache, StoreFailure

from .expert_ranking import ExpertRanking, rank_experts
from .settings import RegistrySettings

logger = logging.getLogger(__name__)


def ranking_message(model: str, node: str, ranking: ExpertRanking) -> pb.ExpertRanking:
    return pb.ExpertRanking(
        model=model,
        method=ranking.method,
        note=ranking.note,
        layers=[
            pb.LayerRanking(experts=list(order), scores=list(scores))
            for order, scores in zip(ranking.order, ranking.scores, strict=True)
        ],
        ranked_unix=int(time.time()),
        node=node,
    )


class ExpertRanker(LoopComponent):
    def __init__(
        self, settings: RegistrySettings, store: EtcdStore, catalog: PrefixCache[pb.CatalogEntry]
    ) -> None:
        self._settings = settings
        self._store = store
        self._catalog = catalog
        self.rankings = PrefixCache(store, keys.expert_rankings(settings.mesh_id), pb.ExpertRanking)
        self._dirty = asyncio.Event()
        catalog.listeners.append(self._dirty.set)

    async def loop(self) -> None:
        await self._catalog.ready.wait()
        await self.rankings.ready.wait()
        while True:
            self._dirty.clear()
            for entry in self._due():
                await self._rank(entry)
            await self._dirty.wait()

    def _due(self) -> list[pb.CatalogEntry]:
        done = {r.model: r.ranked_unix for r in self.rankings.items.values()}
        return [
            e for e in self._catalog.items.values()
            if e.facts.expert_count > 0 and e.source.node == self._settings.node
            and done.get(e.name, 0) < e.registered_unix
        ]  # fmt: skip

    async def _rank(self, entry: pb.CatalogEntry) -> None:
        path = Path(entry.source.path)
        logger.info("ranking the %d experts of %s", entry.facts.expert_count, entry.name)
        started = time.monotonic()
        try:
            imatrix = llama_tool("llama-imatrix")
            threads = self._settings.ranking_threads
            ranking = await asyncio.to_thread(rank_experts, path, imatrix, threads=threads)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("cannot rank the experts of %s: %s", entry.name, exc)
            return
        message = ranking_message(entry.name, self._settings.node, ranking)
        try:
            await self._store.put(keys.expert_ranking(self._settings.mesh_id, entry.name), message)
        except StoreFailure as exc:
            logger.warning("cannot store the expert ranking of %s: %s", entry.name, exc)
            return
        logger.info("ranked %s in %.1fs: %s", entry.name, time.monotonic() - started, ranking.note)
