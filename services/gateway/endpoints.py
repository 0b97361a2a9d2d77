"""The gateway's routing table: every ready endpoint in the mesh, grouped by model, kept
current by etcd watches. Lookups never touch the network."""

from __future__ import annotations

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, PrefixCache


class EndpointTable:
    def __init__(self, store: EtcdStore, mesh: str) -> None:
        self.endpoints = PrefixCache(store, keys.endpoints(mesh), pb.Endpoint)
        self.catalog = PrefixCache(store, keys.catalog(mesh), pb.CatalogEntry)
        self.demand = PrefixCache(store, keys.demand(mesh), pb.Demand)
        self.caches = [self.endpoints, self.catalog, self.demand]
        self._by_model: dict[str, tuple[pb.Endpoint, ...]] = {}
        self._entries: dict[str, pb.CatalogEntry] = {}
        self._aliases: dict[str, str] = {}
        self._known: frozenset[str] = frozenset()
        for cache in self.caches:
            cache.listeners.append(self._rebuild)

    def _rebuild(self) -> None:
        grouped: dict[str, list[pb.Endpoint]] = {}
        for endpoint in self.endpoints.items.values():
            grouped.setdefault(endpoint.model, []).append(endpoint)
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
