"""`/api/status` as a pure function of what the store holds (the gateway's watch-fed copies)
and this gateway's own counters: no store round trip, so a status of a large mesh costs only
the walk over its records."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from meshllm.core.devices import stable_id
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from . import schema

INSTANCE_STATES: dict[int, schema.InstanceState] = {
    pb.INSTANCE_STATE_STARTING: "starting",
    pb.INSTANCE_STATE_LOADING: "loading",
    pb.INSTANCE_STATE_READY: "ready",
    pb.INSTANCE_STATE_FAILED: "failed",
    pb.INSTANCE_STATE_STOPPING: "stopping",
    pb.INSTANCE_STATE_STOPPED: "stopped",
}
BACKENDS: dict[int, schema.Backend] = {
    pb.DEVICE_KIND_CPU: "cpu",
    pb.DEVICE_KIND_CUDA: "cuda",
    pb.DEVICE_KIND_ROCM: "rocm",
    pb.DEVICE_KIND_VULKAN: "vulkan",
}
MEMBER_ROLES: dict[int, schema.MemberRole] = {
    pb.ASSIGNMENT_ROLE_UNSPECIFIED: "solo",
    pb.ASSIGNMENT_ROLE_SOLO: "solo",
    pb.ASSIGNMENT_ROLE_HOST: "host",
    pb.ASSIGNMENT_ROLE_PEER: "peer",
    pb.ASSIGNMENT_ROLE_SHARD: "shard",
}


@dataclass(frozen=True)
class Here:
    """What only this gateway knows: where it runs and how it is reached."""

    node: str
    version: str
    api_url: str
    console_url: str
    invite_token: str = ""
    client_invite_token: str = ""


@dataclass(frozen=True)
class MeshSnapshot:
    mesh_id: str
    workers: Iterable[pb.WorkerRecord] = ()
    services: Iterable[pb.ServiceRecord] = ()
    catalog: Iterable[pb.CatalogEntry] = ()
    endpoints: Iterable[pb.Endpoint] = ()
    assignments: Iterable[pb.Assignment] = ()
    placement: Iterable[pb.PlacementStatus] = ()
    rtt: Iterable[pb.RttReport] = ()
    shards: Iterable[pb.ShardRecord] = ()
    routing: list[schema.Routing] = field(default_factory=list)


def build_status(mesh: MeshSnapshot, here: Here, now: float | None = None) -> schema.Status:
    workers = sorted(mesh.workers, key=lambda w: (w.node, w.worker_id))
    assignments = list(mesh.assignments)
    nodes = build_nodes(workers, mesh.services, assignments, rtt_from(here.node, mesh.rtt))
    own = next((n for n in nodes if n.id == here.node), None)
    routing = sorted(mesh.routing, key=lambda r: r.model)
    return schema.Status(
        mesh_id=mesh.mesh_id,
        this_node=schema.ThisNode(
            id=here.node,
            role=own.role if own is not None else "client",
            version=here.version,
            llama_build=next((w.llama_build for w in workers if w.node == here.node), ""),
            api_url=here.api_url,
            console_url=here.console_url,
            addresses=sorted(
                {w.grpc_address.rpartition(":")[0] for w in workers if w.node == here.node}
            ),
            invite_token=here.invite_token,
        ),
        nodes=nodes,
        models=build_models(mesh, workers, assignments),
        in_flight=sum(r.in_flight for r in routing),
        routing=routing,
        updated_unix=time.time() if now is None else now,
    )


def rtt_from(node: str, reports: Iterable[pb.RttReport]) -> dict[str, float]:
    """Round trips measured from `node` (by any of its workers: the shortest)."""
    found: dict[str, float] = {}
    for report in reports:
        if report.node == node:
            for other, ms in report.rtt_ms.items():
                found[other] = min(ms, found.get(other, ms))
    return found


def node_role(workers: list[pb.WorkerRecord]) -> schema.NodeRole:
    states = {i.state for w in workers for i in w.instances}
    if not workers:
        return "client"
    if pb.INSTANCE_STATE_READY in states:
        return "serving"
    if states & {pb.INSTANCE_STATE_STARTING, pb.INSTANCE_STATE_LOADING}:
        return "loading"
    return "standby"


def build_nodes(
    workers: list[pb.WorkerRecord],
    services: Iterable[pb.ServiceRecord],
    assignments: list[pb.Assignment],
    rtt: Mapping[str, float],
) -> list[schema.Node]:
    by_node: dict[str, list[pb.WorkerRecord]] = {}
    for w in workers:
        by_node.setdefault(w.node, []).append(w)
    kinds: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    for s in services:
        kinds.setdefault(s.node, set()).add(s.kind)
        versions[s.node] = s.version
    reserved: dict[tuple[str, str], int] = {}
    for a in assignments:
        key = (a.node, a.worker_id)
        reserved[key] = reserved.get(key, 0) + a.memory_bytes
    nodes = []
    for node in sorted(by_node.keys() | kinds.keys()):
        own = by_node.get(node, [])
        nodes.append(
            schema.Node(
                id=node,
                role=node_role(own),
                version=versions.get(node) or next((w.version for w in own), ""),
                services=sorted(kinds.get(node, set())),
                workers=[build_worker(w, reserved.get((w.node, w.worker_id), 0)) for w in own],
                rtt_ms=rtt.get(node),
            )
        )
    return nodes


def build_worker(record: pb.WorkerRecord, reserved: int) -> schema.Worker:
    d = record.device
    sid, pinnable = stable_id(d)
    return schema.Worker(
        id=record.worker_id,
        device=schema.Device(
            id=d.id,
            name=d.name,
            backend=BACKENDS.get(d.kind, "unknown"),
            stable_id=sid,
            pinnable=pinnable,
            memory_total_bytes=d.memory_total_bytes,
            memory_budget_bytes=d.memory_budget_bytes,
            memory_reserved_bytes=reserved,
            memory_used_bytes=max(0, d.memory_total_bytes - d.memory_free_bytes),
            bandwidth_gbps=d.memory_bandwidth_gbps or None,
        ),
        draining=record.draining,
        standby=not record.pins_models,
        instances=[
            schema.Instance(
                id=i.id,
                model=i.model,
                state=INSTANCE_STATES.get(i.state, "starting"),
                port=i.port,
                memory_bytes=i.memory_bytes,
                restarts=i.restart_count,
                message=i.message,
            )
            for i in record.instances
        ],
    )


def build_models(
    mesh: MeshSnapshot, workers: list[pb.WorkerRecord], assignments: list[pb.Assignment]
) -> list[schema.Model]:
    catalog = {e.name: e for e in mesh.catalog}
    placement = {p.model: p for p in mesh.placement}
    ready: dict[str, int] = {}
    for e in mesh.endpoints:
        ready[e.model] = ready.get(e.model, 0) + 1
    instances = {(w.node, w.worker_id, i.assignment_id): i for w in workers for i in w.instances}
    quality = {(r.model, r.spec.shard_id): shard_quality(r) for r in mesh.shards}
    groups: dict[str, dict[str, list[pb.Assignment]]] = {}
    for a in assignments:
        groups.setdefault(a.model, {}).setdefault(a.group_id or a.id, []).append(a)
    models = []
    for name in sorted(catalog.keys() | placement.keys() | ready.keys() | groups.keys()):
        entry = catalog.get(name, pb.CatalogEntry(name=name))
        placements = [
            build_placement(gid, members, instances, quality)
            for gid, members in sorted(groups.get(name, {}).items())
        ]
        models.append(build_model(entry, placement.get(name), ready.get(name, 0), placements))
    return models


def build_model(
    entry: pb.CatalogEntry,
    status: pb.PlacementStatus | None,
    ready: int,
    placements: list[schema.Placement],
) -> schema.Model:
    facts = entry.facts
    capabilities: list[schema.Capability] = ["chat"]
    if entry.HasField("projector"):
        capabilities.append("vision")
    if facts.expert_count > 0:
        capabilities.append("experts")
    state: schema.ModelState = "serving" if ready else "loading" if placements else "pending"
    demand = None
    if status is not None and (status.requests_per_minute or status.pinned_replicas):
        demand = schema.Demand(
            requests_per_minute=round(status.requests_per_minute, 2),
            last_request_unix=status.last_request_unix,
            pinned_replicas=status.pinned_replicas,
            mesh_replicas=status.mesh_replicas,
            verdict=status.demand,
        )
    return schema.Model(
        id=entry.name,
        aliases=list(entry.aliases),
        state=state,
        architecture=facts.architecture,
        size_bytes=facts.file_size_bytes,
        context_length=facts.context_length,
        capabilities=capabilities,
        replicas=ready,
        placements=placements,
        demand=demand,
        why=list(status.reasons) if status is not None else [],
        next=list(status.next) if status is not None else [],
    )


def build_placement(
    group: str,
    members: list[pb.Assignment],
    instances: Mapping[tuple[str, str, str], pb.Instance],
    quality: Mapping[tuple[str, str], schema.ShardQuality],
) -> schema.Placement:
    roles = {a.role for a in members}
    kind: schema.PlacementKind = (
        "shards"
        if pb.ASSIGNMENT_ROLE_SHARD in roles
        else "split"
        if roles & {pb.ASSIGNMENT_ROLE_HOST, pb.ASSIGNMENT_ROLE_PEER}
        else "solo"
    )
    host = next((a for a in members if a.role == pb.ASSIGNMENT_ROLE_HOST), None)
    order = [host.id, *(p.assignment_id for p in host.peers)] if host is not None else []
    members = sorted(
        members, key=lambda a: (order.index(a.id) if a.id in order else len(order), a.node)
    )
    return schema.Placement(
        kind=kind,
        group=group,
        context=max((a.context for a in members), default=0),
        members=[
            schema.Member(
                node=a.node,
                worker=a.worker_id,
                role=MEMBER_ROLES.get(a.role, "solo"),
                state=_member_state(instances.get((a.node, a.worker_id, a.id))),
                memory_bytes=a.memory_bytes,
                layer_share=round(a.share, 4) if kind == "split" else None,
                experts=a.shard.expert_count if kind == "shards" else None,
                expert_ids=[list(layer.experts) for layer in a.shard.layers]
                if kind == "shards"
                else None,
                quality=quality.get((a.model, a.shard.shard_id)) if kind == "shards" else None,
            )
            for a in members
        ],
    )


def shard_quality(record: pb.ShardRecord) -> schema.ShardQuality:
    return schema.ShardQuality(
        passed=record.passed,
        ppl_ratio=round(record.ppl_ratio, 4),
        same_top=round(record.same_top, 4),
        verdict=record.quality,
        measured_on=record.node,
    )


def _member_state(instance: pb.Instance | None) -> schema.InstanceState | Literal["assigned"]:
    return "assigned" if instance is None else INSTANCE_STATES.get(instance.state, "starting")
