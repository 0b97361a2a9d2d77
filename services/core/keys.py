"""The etcd key layout, in one place. Every key is built here, never by an f-string elsewhere.

    /mesh/<mesh>/workers/<node>/<worker>              WorkerRecord      worker's lease
    /mesh/<mesh>/services/<kind>/<instance>           ServiceRecord     the service's lease
    /mesh/<mesh>/catalog/<model>                      CatalogEntry      no lease
    /mesh/<mesh>/experts/<model>                      ExpertRanking     no lease
    /mesh/<mesh>/shards/<model>/<shard>               ShardRecord       no lease
    /mesh/<mesh>/files/<model>/<node>                 ModelFile         the registry's lease
    /mesh/<mesh>/demand/<model>/<origin>              Demand            the origin's lease
    /mesh/<mesh>/assignments/<node>/<worker>/<id>     Assignment        the worker's lease
    /mesh/<mesh>/placement/<model>                    PlacementStatus   the leader's lease
    /mesh/<mesh>/endpoints/<model>/<instance>         Endpoint          worker's lease
    /mesh/<mesh>/leader/scheduler                     instance name     the leader's lease
    /mesh/<mesh>/rtt/<node>/<worker>                  RttReport         worker's lease
    /mesh-auth/<mesh>/members/<node>                  Member            no lease
    /mesh-auth/<mesh>/revoked/<serial>                Revocation        no lease
    /mesh-auth/<mesh>/invites/<id>                    Invite            no lease

Model names may contain '/', so they are percent-encoded inside keys. The authority's records
live outside /mesh/<mesh>/ because etcd's permissions are ranges that can only be added: a node
may write anything under /mesh/<mesh>/ but only read /mesh-auth/<mesh>/.
"""

from __future__ import annotations

from urllib.parse import quote, unquote


def _part(value: str) -> str:
    if not value:
        raise ValueError("empty key segment")
    return quote(value, safe="")


def _root(mesh: str) -> str:
    return f"/mesh/{_part(mesh)}/"


def workers(mesh: str, node: str | None = None) -> str:
    base = _root(mesh) + "workers/"
    return base if node is None else f"{base}{_part(node)}/"


def worker(mesh: str, node: str, worker_id: str) -> str:
    return workers(mesh, node) + _part(worker_id)


def services(mesh: str, kind: str | None = None) -> str:
    base = _root(mesh) + "services/"
    return base if kind is None else f"{base}{_part(kind)}/"


def service(mesh: str, kind: str, instance: str) -> str:
    return services(mesh, kind) + _part(instance)


def catalog(mesh: str) -> str:
    return _root(mesh) + "catalog/"


def catalog_entry(mesh: str, model: str) -> str:
    return catalog(mesh) + _part(model)


def expert_rankings(mesh: str) -> str:
    return _root(mesh) + "experts/"


def expert_ranking(mesh: str, model: str) -> str:
    return expert_rankings(mesh) + _part(model)


def shards(mesh: str, model: str | None = None) -> str:
    base = _root(mesh) + "shards/"
    return base if model is None else f"{base}{_part(model)}/"


def shard(mesh: str, model: str, shard_id: str) -> str:
    return shards(mesh, model) + _part(shard_id)


def files(mesh: str, model: str | None = None) -> str:
    base = _root(mesh) + "files/"
    return base if model is None else f"{base}{_part(model)}/"


def file_entry(mesh: str, model: str, node: str) -> str:
    return files(mesh, model) + _part(node)


def demand(mesh: str, model: str | None = None) -> str:
    base = _root(mesh) + "demand/"
    return base if model is None else f"{base}{_part(model)}/"


def demand_entry(mesh: str, model: str, origin: str, worker_id: str = "") -> str:
    """One origin's demand for a model: a gateway's traffic, or a node's pin (one per worker
    of the node, so each pin lives exactly as long as its worker)."""
    entry = demand(mesh, model) + _part(origin)
    return f"{entry}/{_part(worker_id)}" if worker_id else entry


def assignments(mesh: str, node: str | None = None, worker_id: str | None = None) -> str:
    base = _root(mesh) + "assignments/"
    if node is None:
        return base
    base += f"{_part(node)}/"
    return base if worker_id is None else f"{base}{_part(worker_id)}/"


def assignment(mesh: str, node: str, worker_id: str, assignment_id: str) -> str:
    return assignments(mesh, node, worker_id) + _part(assignment_id)


def placements(mesh: str) -> str:
    return _root(mesh) + "placement/"


def placement(mesh: str, model: str) -> str:
    return placements(mesh) + _part(model)


def endpoints(mesh: str, model: str | None = None) -> str:
    base = _root(mesh) + "endpoints/"
    return base if model is None else f"{base}{_part(model)}/"


def endpoint(mesh: str, model: str, instance_id: str) -> str:
    return endpoints(mesh, model) + _part(instance_id)


def rtts(mesh: str) -> str:
    return _root(mesh) + "rtt/"


def rtt(mesh: str, node: str, worker_id: str) -> str:
    return rtts(mesh) + f"{_part(node)}/{_part(worker_id)}"


def leader(mesh: str, role: str) -> str:
    return _root(mesh) + f"leader/{_part(role)}"


def auth_root(mesh: str) -> str:
    return f"/mesh-auth/{_part(mesh)}/"


def members(mesh: str) -> str:
    return auth_root(mesh) + "members/"


def member(mesh: str, node: str) -> str:
    return members(mesh) + _part(node)


def revocations(mesh: str) -> str:
    return auth_root(mesh) + "revoked/"


def revocation(mesh: str, serial: int) -> str:
    return revocations(mesh) + str(serial)


def invites(mesh: str) -> str:
    return auth_root(mesh) + "invites/"


def invite(mesh: str, invite_id: str) -> str:
    return invites(mesh) + _part(invite_id)


def last_segment(key: str) -> str:
    """The decoded last segment of a key (a model name, an instance id)."""
    return unquote(key.rstrip("/").rsplit("/", 1)[-1])
