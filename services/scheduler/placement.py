"""Placement as a pure function of a snapshot: which workers serve which model.

The unit of placement is a **group**: the assignments that together serve one replica — one
solo assignment, or (for a split) a host and its peers, all carrying the group's id. A group
is kept only whole (its want still wanted, every member's worker alive, every peer the host
names present) and otherwise deleted whole: a split never loses a peer silently.

Each want (a replica pinned by a node's `--model`, or asked for by the mesh) gets one
assignment. A model from a local file goes only to nodes whose registry holds the file; a
pinned want prefers its own node, and a pinned replica placed elsewhere (its node was away,
full, or had lost the file) goes home as soon as its node can take it again. A model fits a
worker when its weights + KV cache for the context + headroom fit in what the worker's device
budget has left after the assignments it already holds. Among the workers it fits, the one
with the most memory left wins (ties: node, worker id). Every rejected worker gets a reason,
kept on the model's PlacementStatus so "why is my model pending" has an answer.

A model that fits no single worker (or whose want asks for a split) is split by layers
(split.py): a host assignment naming its peers and one peer assignment per peer, all in one
group, created together or not at all. A split group stays whole only while every peer is
still within the RTT cap of its host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from . import split
from .settings import PlacementSettings

GiB = 2**30
RttFn = Callable[[str, str], float | None]  # between two nodes, in ms; None: not measured


def no_rtt(a: str, b: str) -> float | None:
    return None


def fmt_bytes(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.0f} MiB"


def context_for(facts: pb.ModelFacts, wanted: int, settings: PlacementSettings) -> int:
    context = wanted or settings.default_context
    return min(context, facts.context_length) if facts.context_length > 0 else context


def memory_needed(facts: pb.ModelFacts, context: int, settings: PlacementSettings) -> int:
    weights = facts.file_size_bytes
    return int(
        weights
        + facts.kv_bytes_per_token * context
        + settings.headroom_bytes
        + weights * settings.headroom_fraction
    )


def assignment_id(model: str, origin: str, worker: pb.WorkerRecord) -> str:
    key = f"{model}@{origin}@{worker.node}/{worker.worker_id}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Want:
    """One replica someone asked for: pinned by a node (`origin`), or for the mesh ("")."""

    model: str
    origin: str
    context: int
    split: bool = False  # split even if it fits one worker


def wants_from(demands: Iterable[pb.Demand]) -> list[Want]:
    contexts: dict[tuple[str, str], int] = {}
    splits: set[tuple[str, str]] = set()
    for d in demands:
        key = (d.model, d.origin if d.pinned else "")
        contexts[key] = max(contexts.get(key, 0), d.context)
        if d.split:
            splits.add(key)
    return [Want(m, o, c, (m, o) in splits) for (m, o), c in sorted(contexts.items())]


@dataclass
class Plan:
    keep: list[tuple[str, pb.Assignment]] = field(default_factory=list)
    create: list[tuple[pb.WorkerRecord, pb.Assignment]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # assignment keys
    status: dict[str, pb.PlacementStatus] = field(default_factory=dict)

    def report(self, model: str, placed: bool, reasons: list[str]) -> None:
        status = self.status.setdefault(model, pb.PlacementStatus(model=model, placed=True))
        status.placed = status.placed and placed
        status.reasons.extend(r for r in reasons if r not in status.reasons)


def plan(
    wants: Iterable[Want],
    catalog: Mapping[str, pb.CatalogEntry],
    files: Mapping[str, set[str]],
    workers: Iterable[pb.WorkerRecord],
    assignments: Mapping[str, pb.Assignment],
    settings: PlacementSettings,
    rtt: RttFn = no_rtt,
) -> Plan:
    """`files`: model → nodes holding its file. `assignments`: key → Assignment. `rtt`: the
    measured round-trip time between two nodes."""
    result = Plan()
    wants = list(wants)
    wanted = {(w.model, w.origin) for w in wants}
    live = {(w.node, w.worker_id): w for w in workers}
    used: dict[tuple[str, str], int] = dict.fromkeys(live, 0)
    served: set[tuple[str, str]] = set()
    for members in groups_of(assignments):
        lead = members[0][1]
        want = (lead.model, lead.origin)
        whole = group_is_whole(members, live) and peers_in_reach(lead, rtt)
        if want in wanted and want not in served and whole:
            result.keep.extend(members)
            for _, a in members:
                used[(a.node, a.worker_id)] += a.memory_bytes
            served.add(want)
        else:
            result.delete.extend(key for key, _ in members)
    for key, a in list(result.keep):
        if _can_go_home(a, catalog, files, live, used):
            result.keep.remove((key, a))
            result.delete.append(key)
            used[(a.node, a.worker_id)] -= a.memory_bytes
            served.discard((a.model, a.origin))
    for want in wants:
        if (want.model, want.origin) in served:
            result.report(want.model, True, [])
        else:
            _place(want, catalog, files, live, used, settings, result, rtt)
    return result


LEADS = (pb.ASSIGNMENT_ROLE_SOLO, pb.ASSIGNMENT_ROLE_HOST, pb.ASSIGNMENT_ROLE_UNSPECIFIED)


def groups_of(assignments: Mapping[str, pb.Assignment]) -> list[list[tuple[str, pb.Assignment]]]:
    """Assignments by group, each group's lead (its solo or host assignment) first, groups in
    the order of their lead's key. An assignment without a group id is a group of its own."""
    grouped: dict[str, list[tuple[str, pb.Assignment]]] = {}
    for key, a in sorted(assignments.items()):
        grouped.setdefault(a.group_id or key, []).append((key, a))
    ordered = [sorted(m, key=lambda item: item[1].role not in LEADS) for m in grouped.values()]
    return sorted(ordered, key=lambda members: members[0][0])


def group_is_whole(
    members: list[tuple[str, pb.Assignment]], live: Mapping[tuple[str, str], pb.WorkerRecord]
) -> bool:
    """A lead, every member on a live worker, and exactly the peers the lead names."""
    lead = members[0][1]
    if lead.role not in LEADS:
        return False
    if any((a.node, a.worker_id) not in live for _, a in members):
        return False
    named = sorted((p.node, p.worker_id) for p in lead.peers)
    present = sorted((a.node, a.worker_id) for _, a in members[1:])
    return named == present


def peers_in_reach(lead: pb.Assignment, rtt: RttFn) -> bool:
    """Every peer of a split on another node is still measured within the RTT cap."""
    for peer in lead.peers:
        if peer.node != lead.node:
            ms = rtt(lead.node, peer.node)
            if ms is None or ms >= split.RTT_CAP_MS:
                return False
    return True


def _place(
    want: Want,
    catalog: Mapping[str, pb.CatalogEntry],
    files: Mapping[str, set[str]],
    live: Mapping[tuple[str, str], pb.WorkerRecord],
    used: dict[tuple[str, str], int],
    settings: PlacementSettings,
    result: Plan,
    rtt: RttFn = no_rtt,
) -> None:
    entry = catalog.get(want.model)
    if entry is None:
        result.report(want.model, False, ["not in the catalog: register it first"])
        return
    candidates, reasons = _with_file(entry, files.get(want.model, set()), live.values())
    local = [w for w in candidates if w.node == want.origin]
    context = context_for(entry.facts, want.context, settings)
    need = memory_needed(entry.facts, context, settings)
    others = [w for w in candidates if w not in local]
    worker, fit_reasons = choose_worker(need, local or others, used)
    if worker is None and local and others:  # the pinning node is full: anywhere else
        worker, more = choose_worker(need, others, used)
        fit_reasons += more
    reasons += fit_reasons
    if worker is None or want.split:
        group, split_reasons = _split_group(want, need, context, candidates, live, used, rtt)
        if group:
            for w, a in group:
                used[(w.node, w.worker_id)] += a.memory_bytes
                result.create.append((w, a))
            result.report(want.model, True, split_reasons)
            return
        reasons += split_reasons
    if worker is None or want.split:  # a split that was asked for waits for its peers
        result.report(want.model, False, reasons)
        return
    used[(worker.node, worker.worker_id)] += need
    aid = assignment_id(want.model, want.origin, worker)
    assignment = pb.Assignment(
        id=aid,
        group_id=aid,
        model=want.model,
        node=worker.node,
        worker_id=worker.worker_id,
        role=pb.ASSIGNMENT_ROLE_SOLO,
        context=context,
        memory_bytes=need,
        reasons=reasons,
        origin=want.origin,
    )
    result.create.append((worker, assignment))
    result.report(want.model, True, reasons)


def _split_group(
    want: Want,
    need: int,
    context: int,
    hosts: list[pb.WorkerRecord],
    live: Mapping[tuple[str, str], pb.WorkerRecord],
    used: Mapping[tuple[str, str], int],
    rtt: RttFn,
) -> tuple[list[tuple[pb.WorkerRecord, pb.Assignment]], list[str]]:
    """The host's and peers' assignments of a split (peers first), or none with reasons."""
    can_host = {(w.node, w.worker_id) for w in hosts}
    devices = [
        split.Device(
            w.node,
            w.worker_id,
            w.device.memory_budget_bytes - used.get(key, 0),
            w.rpc_version,
            key in can_host,
        )
        for key, w in sorted(live.items())
        if not w.draining and w.device.memory_budget_bytes > used.get(key, 0)
    ]
    if not devices:
        return [], []
    chosen, reasons = split.plan_split(
        need, devices, lambda a, b: rtt(a.node, b.node), force=want.split
    )
    if chosen is None:
        return [], [f"split: {r}" for r in reasons]
    host = live[(chosen.host.node, chosen.host.worker_id)]
    group_id = assignment_id(want.model, want.origin, host)
    parts = ", ".join(
        f"{d.name} {share:.0%}"
        for d, share in zip((*chosen.peers, chosen.host), chosen.shares, strict=True)
    )
    why = [
        f"split over {chosen.stages} devices ({parts}), host {chosen.host.name}, "
        f"~{chosen.per_token_ms:.1f} ms of round trips per token",
        *reasons,
    ]

    def member(device: split.Device, role: int, share: float) -> pb.Assignment:
        worker = live[(device.node, device.worker_id)]
        return pb.Assignment(
            id=assignment_id(want.model, want.origin, worker),
            group_id=group_id,
            model=want.model,
            node=device.node,
            worker_id=device.worker_id,
            role=role,
            context=context,
            memory_bytes=int(need * share),
            share=share,
            reasons=why,
            origin=want.origin,
        )

    peers = [
        member(d, pb.ASSIGNMENT_ROLE_PEER, s)
        for d, s in zip(chosen.peers, chosen.shares[:-1], strict=True)
    ]
    for p in peers:  # a peer's assignment names its host: the only node its rpc-server serves
        p.peers.add(node=chosen.host.node, worker_id=chosen.host.worker_id)
    lead = member(chosen.host, pb.ASSIGNMENT_ROLE_HOST, chosen.shares[-1])
    lead.peers.extend(
        pb.PeerShare(
            node=p.node,
            worker_id=p.worker_id,
            share=p.share,
            memory_bytes=p.memory_bytes,
            assignment_id=p.id,
        )
        for p in peers
    )
    members = [*peers, lead]
    return [(live[(a.node, a.worker_id)], a) for a in members], why


def _can_go_home(
    a: pb.Assignment,
    catalog: Mapping[str, pb.CatalogEntry],
    files: Mapping[str, set[str]],
    live: Mapping[tuple[str, str], pb.WorkerRecord],
    used: Mapping[tuple[str, str], int],
) -> bool:
    """A pinned replica serving away from its node, whose node could take it now."""
    entry = catalog.get(a.model)
    if a.role != pb.ASSIGNMENT_ROLE_SOLO or not a.origin or a.node == a.origin or entry is None:
        return False
    candidates, _ = _with_file(entry, files.get(a.model, set()), live.values())
    home = [w for w in candidates if w.node == a.origin]
    worker, _ = choose_worker(a.memory_bytes, home, used)
    return worker is not None


def _with_file(
    entry: pb.CatalogEntry, nodes: set[str], workers: Iterable[pb.WorkerRecord]
) -> tuple[list[pb.WorkerRecord], list[str]]:
    """A model from a local path can run only where a registry holds its file; a fetchable
    one (a built-in) anywhere."""
    workers = list(workers)
    if entry.source.kind != pb.MODEL_SOURCE_KIND_PATH:
        return workers, []
    kept = [w for w in workers if w.node in nodes]
    dropped = [
        f"{w.node}/{w.worker_id}: does not have the file" for w in workers if w.node not in nodes
    ]
    return kept, dropped


def choose_worker(
    need: int, workers: Iterable[pb.WorkerRecord], used: Mapping[tuple[str, str], int]
) -> tuple[pb.WorkerRecord | None, list[str]]:
    reasons: list[str] = []
    fits: list[tuple[int, str, str, pb.WorkerRecord]] = []
    for w in workers:
        name = f"{w.node}/{w.worker_id}"
        left = w.device.memory_budget_bytes - used.get((w.node, w.worker_id), 0)
        if w.draining:
            reasons.append(f"{name}: draining")
        elif left < need:
            reasons.append(
                f"{name}: needs {fmt_bytes(need)}, has {fmt_bytes(max(left, 0))} "
                f"of {fmt_bytes(w.device.memory_budget_bytes)} free"
            )
        else:
            fits.append((-(left - need), w.node, w.worker_id, w))
    if not fits:
        if not reasons:
            reasons.append("no worker in the mesh")
        return None, reasons
    fits.sort(key=lambda f: f[:3])
    best = fits[0][3]
    reasons.insert(
        0,
        f"{best.node}/{best.worker_id}: fits solo ({fmt_bytes(need)}), "
        f"{fmt_bytes(-fits[0][0])} left after",
    )
    return best, reasons
