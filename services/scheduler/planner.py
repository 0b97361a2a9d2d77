"""The leader's loop: watch workers, catalog, demand and assignments; when anything changes,
plan again and write the difference (assignments under each worker's lease, placement
statuses under ours)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping

from meshllm.core import keys
from meshllm.core.lifecycle import LoopComponent
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, Fence, FenceLost, LeaseKeeper, PrefixCache, StoreFailure

from . import demand, metrics, placement
from .leader import LeaderElection
from .settings import DemandSettings, PlacementSettings

logger = logging.getLogger(__name__)


class MeshView:
    """Watch-fed copies of everything placement reads."""

    def __init__(self, store: EtcdStore, mesh: str) -> None:
        self.workers = PrefixCache(store, keys.workers(mesh), pb.WorkerRecord)
        self.catalog = PrefixCache(store, keys.catalog(mesh), pb.CatalogEntry)
        self.demand = PrefixCache(store, keys.demand(mesh), pb.Demand)
        self.assignments = PrefixCache(store, keys.assignments(mesh), pb.Assignment)
        self.files = PrefixCache(store, keys.files(mesh), pb.ModelFile)
        self.placement = PrefixCache(store, keys.placements(mesh), pb.PlacementStatus)
        self.rtt = PrefixCache(store, keys.rtts(mesh), pb.RttReport)
        self.rankings = PrefixCache(store, keys.expert_rankings(mesh), pb.ExpertRanking)
        self.shards = PrefixCache(store, keys.shards(mesh), pb.ShardRecord)
        # every cache but `placement` (our own output) triggers a new plan
        self.inputs = [
            self.workers,
            self.catalog,
            self.demand,
            self.assignments,
            self.files,
            self.rtt,
            self.rankings,
            self.shards,
        ]
        self.caches = [*self.inputs, self.placement]
        self._views: dict[str, placement.Worker] = {}  # worker key → view of its record

    def worker_views(self) -> list[placement.Worker]:
        """The worker records as placement reads them, each made once per version of its
        record: a steady plan allocates none (a thousand new objects living through every
        plan set off collections of the whole heap, quadrupling the slowest plans)."""
        old, self._views = self._views, {}
        for key, record in self.workers.items.items():
            view = old.get(key)
            if view is None or view.record is not record:
                view = placement.Worker.of(record)
            self._views[key] = view
        return list(self._views.values())

    def file_nodes(self) -> dict[str, set[str]]:
        nodes: dict[str, set[str]] = {}
        for f in self.files.items.values():
            nodes.setdefault(f.model, set()).add(f.node)
        return nodes

    def rtt_between(self) -> placement.RttFn:
        """The higher smoothed round-trip time the two sides report of each other: a path
        one side finds slow is slow (and a one-sided report still counts). Looked up when
        asked, never tabulated: all-pairs reports of a large mesh hold millions of times."""
        by_node: dict[str, list[Mapping[str, float]]] = {}
        for report in self.rtt.items.values():
            by_node.setdefault(report.node, []).append(report.rtt_ms)

        def rtt(a: str, b: str) -> float | None:
            worst = None
            for maps, other in ((by_node.get(a, ()), b), (by_node.get(b, ()), a)):
                for m in maps:
                    ms = m.get(other)
                    if ms is not None and (worst is None or ms > worst):
                        worst = ms
            return worst

        return rtt

    def moe_inputs(self) -> placement.MoeInputs:
        """Rankings and shard records, leaving out those older than their model's
        registration (a file registered again is ranked and measured again)."""
        registered = {e.name: e.registered_unix for e in self.catalog.items.values()}
        rankings = {
            r.model: r
            for r in self.rankings.items.values()
            if r.ranked_unix >= registered.get(r.model, 0)
        }
        shards: dict[str, dict[str, pb.ShardRecord]] = {}
        for record in self.shards.items.values():
            if record.written_unix >= registered.get(record.model, 0):
                shards.setdefault(record.model, {})[record.spec.shard_id] = record
        return placement.MoeInputs(rankings, shards)

    def shard_records(self, model: str) -> list[pb.ShardRecord]:
        return sorted(
            (r for r in self.shards.items.values() if r.model == model),
            key=lambda r: r.spec.shard_id,
        )

    def catalog_by_name(self) -> dict[str, pb.CatalogEntry]:
        return {e.name: e for e in self.catalog.items.values()}

    async def ready(self) -> None:
        await asyncio.gather(*(c.ready.wait() for c in self.caches))


class Planner(LoopComponent):
    def __init__(
        self,
        store: EtcdStore,
        lease: LeaseKeeper,
        view: MeshView,
        mesh: str,
        election: LeaderElection,
        settings: PlacementSettings,
        demand_settings: DemandSettings | None = None,
    ) -> None:
        self._store = store
        self._lease = lease
        self._view = view
        self._mesh = mesh
        self._election = election
        self._settings = settings
        self._demand = demand_settings or DemandSettings()
        self._dirty = asyncio.Event()
        for cache in view.inputs:
            cache.listeners.append(self._dirty.set)

    async def loop(self) -> None:
        await self._view.ready()
        while True:
            await self._election.is_leader.wait()
            try:
                await self._replan()
            except FenceLost as exc:
                self._election.lost(str(exc))
                continue
            except StoreFailure as exc:
                logger.warning("planning failed (%s); will retry", exc)
                await asyncio.sleep(0.5)
                continue
            # wake on any change, and now and then so a lost write gets redone; changes that
            # come meanwhile are planned together, at most one plan per min_interval_s
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=5.0)
            since = time.monotonic() - started
            await asyncio.sleep(max(self._settings.settle_s, self._settings.min_interval_s - since))

    async def _replan(self) -> None:
        self._dirty.clear()
        view = self._view
        started = time.perf_counter()
        result = plan_mesh(view, self._settings, self._demand, time.time())
        metrics.PLAN_DURATION.observe(time.perf_counter() - started)
        placed = sum(1 for s in result.status.values() if s.placed)
        metrics.MODELS.labels("placed").set(placed)
        metrics.MODELS.labels("pending").set(len(result.status) - placed)
        fence = self._election.fence
        if fence is None:
            return
        for key in result.delete:
            logger.info("removing assignment %s", key)
            await self._store.delete_fenced(fence, key)
            metrics.PLACEMENT_DECISIONS.labels("remove").inc()
        for worker, a in result.create:
            a.created_unix = int(time.time())
            logger.info("assigning %s to %s/%s: %s", a.model, a.node, a.worker_id, a.reasons[0])
            key = keys.assignment(self._mesh, a.node, a.worker_id, a.id)
            await self._store.put_fenced(fence, key, a, lease=worker.lease_id)
            metrics.PLACEMENT_DECISIONS.labels("assign").inc()
        await self._write_status(fence, result.status)

    async def _write_status(self, fence: Fence, status: dict[str, pb.PlacementStatus]) -> None:
        """Statuses hang on this scheduler's lease: they vanish with it, and the next leader
        writes its own."""
        current = {s.model: s for s in self._view.placement.items.values()}
        for model, s in status.items():
            old = current.get(model)
            if old is None or _changed(old, s):
                s.updated_unix = int(time.time())
                key = keys.placement(self._mesh, model)
                await self._store.put_fenced(fence, key, s, lease=self._lease.lease_id)
        for model in current.keys() - status.keys():
            await self._store.delete_fenced(fence, keys.placement(self._mesh, model))


def plan_mesh(
    view: MeshView, settings: PlacementSettings, demand_settings: DemandSettings, now: float
) -> placement.Plan:
    """The plan for what the view holds now: the demand policy's replicas, then placement,
    with the demand behind each model added to its status."""
    traffic = demand.traffic_by_model(view.demand.items.values())
    decisions = demand.mesh_replicas(
        traffic, demand.placed_replicas(view.assignments.items.values()), demand_settings, now
    )
    hottest = sorted(decisions, key=lambda m: (-decisions[m].load, m))
    result = placement.plan(
        placement.wants_from(
            view.demand.items.values(), {m: decisions[m].replicas for m in hottest}
        ),
        view.catalog_by_name(),
        view.file_nodes(),
        view.worker_views(),
        view.assignments.items,
        settings,
        view.rtt_between(),
        view.moe_inputs(),
    )
    add_demand(result.status, view.demand.items.values(), traffic, decisions)
    return result


def _changed(old: pb.PlacementStatus, new: pb.PlacementStatus) -> bool:
    stamped = pb.PlacementStatus()
    stamped.CopyFrom(new)
    stamped.updated_unix = old.updated_unix
    return stamped != old


def add_demand(
    status: dict[str, pb.PlacementStatus],
    records: Iterable[pb.Demand],
    traffic: Mapping[str, demand.ModelDemand],
    decisions: Mapping[str, demand.Decision],
) -> None:
    """The demand behind each model's placement: its traffic, its pins and the policy's
    verdict."""
    pins = demand.pins_by_model(records)
    for model, s in status.items():
        s.pinned_replicas = pins.get(model, 0)
        t = traffic.get(model)
        if t is not None:
            s.requests_per_minute = round(t.requests_per_minute, 2)
            s.last_request_unix = t.last_request_unix
        decision = decisions.get(model)
        if decision is not None:
            s.mesh_replicas = decision.replicas
            s.demand = decision.why
        elif s.pinned_replicas:
            s.demand = f"{s.pinned_replicas} pinned replica{'s' if s.pinned_replicas > 1 else ''}"
