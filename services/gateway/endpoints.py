"""The gateway's routing table: every ready endpoint in the mesh, grouped by model, kept
current by etcd watches. Lookups never touch the network.

An endpoint read from the store is used only if it checks out against the rest of the store
(`endpoint_problem`): it must belong to a worker registered under its node, use that worker's
relay on the worker's own address, point at loopback for same-node use, and (where the mesh
records its members) come from a member node. A forged or stale endpoint is left out and
logged once."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, PrefixCache

logger = logging.getLogger(__name__)


def endpoint_problem(
    key: str,
    endpoint: pb.Endpoint,
    workers: Mapping[tuple[str, str], pb.WorkerRecord],
    members: Collection[str],
) -> str | None:
    """None when the endpoint may be routed to, else why not."""
    if keys.last_segment(key.rsplit("/", 1)[0]) != endpoint.model:
        return "its key names another model"
    worker = workers.get((endpoint.node, endpoint.worker_id))
    if worker is None:
        return f"no worker {endpoint.worker_id!r} is registered on node {endpoint.node!r}"
    if members and endpoint.node not in members:
        return f"node {endpoint.node!r} is not a member of the mesh"
    if endpoint.relay_url != worker.relay_url:
        return "its relay is not its worker's"
    relay_host = urlsplit(endpoint.relay_url).hostname
    if relay_host != worker.grpc_address.rpartition(":")[0].strip("[]"):
        return "its relay is not on its worker's address"
    local = urlsplit(endpoint.local_url)
    if local.scheme != "http" or local.hostname != "127.0.0.1":
        return "its local address is not on loopback"
    return None


class EndpointTable:
    def __init__(self, store: EtcdStore, mesh: str) -> None:
        self.endpoints = PrefixCache(store, keys.endpoints(mesh), pb.Endpoint)
        self.catalog = PrefixCache(store, keys.catalog(mesh), pb.CatalogEntry)
        self.demand = PrefixCache(store, keys.demand(mesh), pb.Demand)
        self.workers = PrefixCache(store, keys.workers(mesh), pb.WorkerRecord)
        self.members = PrefixCache(store, keys.members(mesh), pb.Member)
        self.caches = [self.endpoints, self.catalog, self.demand, self.workers, self.members]
        self._rejected: set[str] = set()
        self._by_model: dict[str, tuple[pb.Endpoint, ...]] = {}
        self._entries: dict[str, pb.CatalogEntry] = {}
        self._aliases: dict[str, str] = {}
        self._known: frozenset[str] = frozenset()
        for cache in self.caches:
            cache.listeners.append(self._rebuild)

    def _rebuild(self) -> None:
        grouped: dict[str, list[pb.Endpoint]] = {}
        workers = {(w.node, w.worker_id): w for w in self.workers.items.values()}
        members = {m.node for m in self.members.items.values()}
        rejected = set()
        for key, endpoint in self.endpoints.items.items():
            problem = endpoint_problem(key, endpoint, workers, members)
            if problem is None:
                grouped.setdefault(endpoint.model, []).append(endpoint)
                continue
            if not self.ready:  # a cache still loading: nothing to say yet
                continue
            rejected.add(key)
            if key not in self._rejected:
                logger.warning("not routing to endpoint %s: %s", key, problem)
        self._rejected = rejected
        self._by_model = {
            m: tuple(sorted(e, key=lambda x: x.instance_id)) for m, e in grouped.items()
        }
        self._entries = {e.name: e for e in self.catalog.items.values()}
        self._aliases = {a: e.name for e in self._entries.values() for a in e.aliases}
        demanded = {d.model for d in self.demand.items.values()}
        self._known = frozenset(self._entries) | demanded | frozenset(self._by_model)

    @property
    def ready(self) -> bool:
        return all(c.ready.is_set() for c in self.caches)

    def resolve(self, model: str) -> str:
        """The model's own name for a name a request used (an alias, or the name itself)."""
        return model if model in self._known else self._aliases.get(model, model)

    def snapshot(self, model: str) -> tuple[pb.Endpoint, ...]:
        return self._by_model.get(model, ())

    def is_known(self, model: str) -> bool:
        return model in self._known

    def served_models(self) -> dict[str, tuple[pb.Endpoint, ...]]:
        return dict(self._by_model)

    def entry(self, model: str) -> pb.CatalogEntry | None:
        return self._entries.get(model)
