"""Placement as a pure function of a snapshot: which workers serve which model.

The unit of placement is a **group**: the assignments that together serve one replica — one
solo assignment, or (for a split) a host and its peers, all carrying the group's id. A group
is kept only whole (its want still wanted, every member's worker alive, every peer the host
names present) and otherwise deleted whole: a split never loses a peer silently.

Each want (a replica pinned by a node's `--model`, or asked for by the mesh) gets one
assignment. A model from a local file goes to nodes whose registry holds the file; when none
of them has room, a device without it that fits it whole takes a copy (its worker copies the
file from a registry that holds it; core/model_copies.py says which models may). A
pinned want prefers its own node, and a pinned replica placed elsewhere (its node was away,
full, or had lost the file) goes home as soon as its node can take it again. A model fits a
worker when its weights + KV cache for the context + headroom fit in what the worker's device
budget has left after the assignments it already holds. Among the workers it fits, the one
with the highest measured memory bandwidth wins, then the one with the most memory left
(ties: node, worker id). Every rejected worker gets a reason, kept on the model's
PlacementStatus so "why is my model pending" has an answer.

A model that fits no single worker (or whose want asks for a split) is split by layers
(split.py): a host assignment naming its peers and one peer assignment per peer, all in one
group, created together or not at all. A split group stays whole only while every peer is
still within the RTT cap of its host.

A mixture of experts that fits no single worker is sharded by experts instead (moe_plan.py),
once the registry has ranked its experts: one shard assignment per device, each naming its
experts and its plan's shard ids, all in one group. Its shards need no file (the registry
that holds it delivers each node its shard). Unlike a split, a shard group is kept in part:
every shard serves alone, so losing one keeps the others (and their sessions) where they
are; the lost shard is placed again on a free device when one can hold it. A shard that
failed the quality gate is withdrawn, and shards of that size or smaller are not planned
again: the plan asks for bigger shards on fewer devices, or waits.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from meshllm.core.model_copies import runs_from_a_copy
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.shard_ids import shard_id

from . import split
from .moe_plan import MoeModel, plan_shards
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


def assignment_id(model: str, origin: str, worker: Worker) -> str:
    key = f"{model}@{origin}@{worker.node}/{worker.worker_id}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Worker:
    """What placement reads of a worker's record, as plain attributes: a plan of a large
    mesh reads them hundreds of thousands of times, and a protobuf field costs about three
    times a plain one (bench/planner_scale.py)."""

    record: pb.WorkerRecord
    node: str
    worker_id: str
    key: tuple[str, str]
    budget: int  # the device's memory budget, in bytes
    gbps: float  # its measured memory bandwidth; 0: not measured
    draining: bool
    pins_models: bool
    rpc_version: str

    @classmethod
    def of(cls, record: pb.WorkerRecord) -> Worker:
        return cls(
            record,
            record.node,
            record.worker_id,
            (record.node, record.worker_id),
            record.device.memory_budget_bytes,
            gbps if (gbps := record.device.memory_bandwidth_gbps) > 0 else 0.0,  # NaN too
            record.draining,
            record.pins_models,
            record.rpc_version,
        )


@dataclass(frozen=True)
class MoeInputs:
    """What expert sharding reads: each mixture's expert ranking, and the shards the
    registries have written and measured (model → shard id → record)."""

    rankings: Mapping[str, pb.ExpertRanking] = field(default_factory=dict)
    shards: Mapping[str, Mapping[str, pb.ShardRecord]] = field(default_factory=dict)

    def record(self, model: str, shard: str) -> pb.ShardRecord | None:
        return self.shards.get(model, {}).get(shard)

    def failed(self, a: pb.Assignment) -> bool:
        record = self.record(a.model, a.shard.shard_id)
        return record is not None and not record.passed

    def smallest_allowed(self, model: str) -> int:
        """One more expert than the largest shard of the model that failed the gate."""
        failed = [r.spec.expert_count for r in self.shards.get(model, {}).values() if not r.passed]
        return max(failed, default=0) + 1


NO_MOE = MoeInputs()


def moe_model(facts: pb.ModelFacts, context: int, settings: PlacementSettings) -> MoeModel | None:
    """A mixture's memory as shards see it (the trunk with its KV cache and headroom, and one
    expert across all layers), or None for a dense model; the same terms as memory_needed."""
    if facts.expert_count <= 0 or facts.expert_tensor_bytes <= 0:
        return None
    scale = 1 + settings.headroom_fraction
    trunk_weights = max(facts.file_size_bytes - facts.expert_tensor_bytes, 0)
    trunk = trunk_weights * scale + facts.kv_bytes_per_token * context + settings.headroom_bytes
    per_expert = -(-int(facts.expert_tensor_bytes * scale) // facts.expert_count)
    return MoeModel(int(trunk), per_expert, facts.expert_count, facts.expert_used_count)


@dataclass(frozen=True)
class Want:
    """Replicas someone asked for: pinned by a node (`origin`), or for the mesh (""). A pin
    may name the devices (workers of the origin node) its replicas run on, one each."""

    model: str
    origin: str
    context: int
    split: bool = False  # split even if it fits one worker
    replicas: int = 1
    devices: tuple[str, ...] = ()


def wants_from(
    demands: Iterable[pb.Demand], mesh_replicas: Mapping[str, int] | None = None
) -> list[Want]:
    """Pinned wants first, then the mesh's, in the order of `mesh_replicas` (hottest first):
    extra replicas are placed in that order while there is room. Without `mesh_replicas`,
    every model with unpinned demand gets one mesh replica."""
    contexts: dict[tuple[str, str], int] = {}
    splits: set[tuple[str, str]] = set()
    devices: dict[tuple[str, str], set[str]] = {}
    for d in demands:
        key = (d.model, d.origin if d.pinned else "")
        contexts[key] = max(contexts.get(key, 0), d.context)
        if d.split:
            splits.add(key)
        if d.pinned and d.worker_id:
            devices.setdefault(key, set()).add(d.worker_id)
    pinned = [
        Want(m, o, c, (m, o) in splits, len(devices.get((m, o), ())) or 1, _sorted(devices, m, o))
        for (m, o), c in sorted(contexts.items())
        if o != ""
    ]
    if mesh_replicas is None:
        mesh_replicas = {m: 1 for m, o in sorted(contexts) if o == ""}
    mesh = [
        Want(m, "", contexts.get((m, ""), 0), (m, "") in splits, n)
        for m, n in mesh_replicas.items()
        if n > 0
    ]
    return [*pinned, *mesh]


def _sorted(
    devices: Mapping[tuple[str, str], set[str]], model: str, origin: str
) -> tuple[str, ...]:
    return tuple(sorted(devices.get((model, origin), ())))


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

    def report_next(self, model: str, reasons: list[str]) -> None:
        """An extra replica that found no room: wanted next, not a failure to place."""
        status = self.status.setdefault(model, pb.PlacementStatus(model=model, placed=True))
        why = reasons[0] if reasons else "no device has room"
        status.next.append(f"replica {len(status.next) + 1} more: {why}")

    def count_replicas(self) -> None:
        groups: dict[str, set[str]] = {}
        for a in [a for _, a in self.keep] + [a for _, a in self.create]:
            groups.setdefault(a.model, set()).add(a.group_id or a.id)
        for model, status in self.status.items():
            status.replicas = len(groups.get(model, ()))


def plan(
    wants: Iterable[Want],
    catalog: Mapping[str, pb.CatalogEntry],
    files: Mapping[str, set[str]],
    workers: Iterable[pb.WorkerRecord | Worker],
    assignments: Mapping[str, pb.Assignment],
    settings: PlacementSettings,
    rtt: RttFn = no_rtt,
    moe: MoeInputs = NO_MOE,
) -> Plan:
    """`workers`: their records, or views of them kept from plan to plan (MeshView's).
    `files`: model → nodes holding its file. `assignments`: key → Assignment. `rtt`: the
    measured round-trip time between two nodes. `moe`: rankings and shard records."""
    result = Plan()
    wants = list(wants)
    wanted = {(w.model, w.origin): w for w in wants}
    # in (node, worker) order, once: every search below walks it in that order
    views = (w if isinstance(w, Worker) else Worker.of(w) for w in workers)
    live = {w.key: w for w in sorted(views, key=lambda w: w.key)}
    used: dict[tuple[str, str], int] = dict.fromkeys(live, 0)
    served: dict[tuple[str, str], int] = {}  # want → replica groups kept
    shard_groups: list[list[pb.Assignment]] = []
    for members in groups_of(assignments):
        lead = members[0][1]
        want = (lead.model, lead.origin)
        room = served.get(want, 0) < _replicas(wanted.get(want)) and _on_a_pinned_device(
            lead, wanted.get(want)
        )
        if lead.role == pb.ASSIGNMENT_ROLE_SHARD:
            serving = [(k, a) for k, a in members if _shard_serves(a, live, moe)] if room else []
            result.keep.extend(serving)
            result.delete.extend(k for k, a in members if (k, a) not in serving)
            for _, a in serving:
                used[(a.node, a.worker_id)] += a.memory_bytes
            if serving:
                served[want] = served.get(want, 0) + 1
                shard_groups.append([a for _, a in serving])
            continue
        if room and group_is_whole(members, live) and peers_in_reach(lead, rtt):
            result.keep.extend(members)
            for _, a in members:
                used[(a.node, a.worker_id)] += a.memory_bytes
            served[want] = served.get(want, 0) + 1
        else:
            result.delete.extend(key for key, _ in members)
    for key, a in list(result.keep):
        if _can_go_home(a, catalog, files, live, used):
            result.keep.remove((key, a))
            result.delete.append(key)
            used[(a.node, a.worker_id)] -= a.memory_bytes
            served[(a.model, a.origin)] -= 1
    for group in shard_groups:
        _replace_lost_shards(group, catalog, live, used, settings, moe, result)
    standby = standby_workers(wants, live)
    kept_because: dict[str, list[str]] = {}  # what placed the replicas kept: why they are there
    for _, a in result.keep:
        kept_because.setdefault(a.model, []).extend(a.reasons)
    # every want's first replica before any want's extras: an unserved model comes first
    for want in wants:
        if served.get((want.model, want.origin), 0) > 0:
            result.report(want.model, True, kept_because.get(want.model, []))
            continue
        where = _where(want, live, standby, result, first=True)
        if where or not live:
            placed, reasons = _place(want, catalog, files, where, used, settings, result, rtt, moe)
        else:
            placed, reasons = False, [_nowhere(want, standby)]
        result.report(want.model, placed, reasons)
        served[(want.model, want.origin)] = int(placed)
    for want in wants:
        have = served.get((want.model, want.origin), 0)
        for _ in range(want.replicas - have if have else 0):
            where = _where(want, live, standby, result, first=False)
            if where:
                placed, reasons = _place(
                    want, catalog, files, where, used, settings, result, rtt, moe
                )
            else:
                placed, reasons = False, [_nowhere(want, standby)]
            if not placed:
                result.report_next(want.model, reasons)
                break
    result.count_replicas()
    return result


def standby_workers(
    wants: Iterable[Want], live: Mapping[tuple[str, str], Worker]
) -> dict[tuple[str, str], Worker]:
    """The workers that take the mesh's replicas: none that serves models of its node's own,
    whether its record says so (from its start) or a pin does — a pin without devices
    claims every worker of its node, one with devices only those."""
    wants = list(wants)
    whole_nodes = {w.origin for w in wants if w.origin and not w.devices}
    devices = {(w.origin, d) for w in wants for d in w.devices}
    return {
        k: w
        for k, w in live.items()
        if not w.pins_models and w.node not in whole_nodes and k not in devices
    }


def _where(
    want: Want,
    live: Mapping[tuple[str, str], Worker],
    standby: Mapping[tuple[str, str], Worker],
    result: Plan,
    first: bool,
) -> Mapping[tuple[str, str], Worker]:
    """The workers one more replica of the want may use: its pinned devices that do not hold
    it yet; for another pin any worker (the first replica may share a device with another's);
    for the mesh's replicas the standby workers without it."""
    if want.devices:
        pinned = {(want.origin, d) for d in want.devices}
        return {k: w for k, w in _without_model(live, want.model, result).items() if k in pinned}
    if want.origin:
        return live if first else _without_model(live, want.model, result)
    return _without_model(standby, want.model, result)


def _nowhere(want: Want, standby: Mapping[tuple[str, str], Worker]) -> str:
    if want.devices:
        names = ", ".join(want.devices)
        return f"pinned to {names} of {want.origin}, which does not report (yet) or serves it"
    return _no_standby(standby)


def _replicas(want: Want | None) -> int:
    return want.replicas if want is not None else 0


def _on_a_pinned_device(lead: pb.Assignment, want: Want | None) -> bool:
    """A kept group of a device pin must be on one of its devices (a pin moved in the
    config file moves its replica)."""
    return want is None or not want.devices or lead.worker_id in want.devices


def _shard_serves(a: pb.Assignment, live: Mapping[tuple[str, str], Worker], moe: MoeInputs) -> bool:
    return (a.node, a.worker_id) in live and not moe.failed(a)


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
    members: list[tuple[str, pb.Assignment]], live: Mapping[tuple[str, str], Worker]
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
    live: Mapping[tuple[str, str], Worker],
    used: dict[tuple[str, str], int],
    settings: PlacementSettings,
    result: Plan,
    rtt: RttFn = no_rtt,
    moe: MoeInputs = NO_MOE,
) -> tuple[bool, list[str]]:
    """Places one replica of the want on the `live` workers it may use (creating its group
    in `result`): placed, and why."""
    entry = catalog.get(want.model)
    if entry is None:
        return False, ["not in the catalog: register it first"]
    candidates, reasons = _with_file(entry, files.get(want.model, set()), live.values())
    context = context_for(entry.facts, want.context, settings)
    need = memory_needed(entry.facts, context, settings)
    draft = None if want.split else drafting(entry, catalog, context)
    if draft is not None:  # with its draft where one device has room for both
        need += draft[1]
        worker, fit, copied = _solo_worker(want, entry, files, live, candidates, need, used)
        if worker is None:
            need, draft = need - draft[1], None
    if draft is None:
        worker, fit, copied = _solo_worker(want, entry, files, live, candidates, need, used)
    reasons = copied or reasons + fit
    if draft is not None:
        reasons.append(f"drafts with {draft[0]} ({fmt_bytes(draft[1])} of it)")
    elif entry.draft and worker is not None:
        why = "no device has room for both" if entry.draft in catalog else "not in the catalog"
        reasons.append(f"without its draft {entry.draft}: {why}")
    mixture = moe_model(entry.facts, context, settings)
    if mixture is not None and (worker is None or want.split):
        group, shard_reasons = _shard_group(want, mixture, context, files, live, used, moe)
        if group:
            _create(group, used, result)
            return True, shard_reasons
        return False, [*reasons, *shard_reasons]
    if worker is None or want.split:
        group, split_reasons = _split_group(want, need, context, candidates, live, used, rtt)
        if group:
            _create(group, used, result)
            return True, split_reasons
        reasons += split_reasons
    if worker is None or want.split:  # a split that was asked for waits for its peers
        return False, reasons
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
        draft=draft[0] if draft is not None else "",
    )
    result.create.append((worker.record, assignment))
    return True, reasons


def _solo_worker(
    want: Want,
    entry: pb.CatalogEntry,
    files: Mapping[str, set[str]],
    live: Mapping[tuple[str, str], Worker],
    candidates: list[Worker],
    need: int,
    used: Mapping[tuple[str, str], int],
) -> tuple[Worker | None, list[str], list[str]]:
    """The device a replica needing `need` runs on alone: its pinning node's first, then any
    that holds the file, then one that takes a copy; why, and (for a copy) why a copy."""
    local = [w for w in candidates if w.node == want.origin]
    others = [w for w in candidates if w not in local]
    worker, reasons = choose_worker(need, local or others, used)
    if worker is None and local and others:  # the pinning node is full: anywhere else
        worker, more = choose_worker(need, others, used)
        reasons += more
    holders = files.get(want.model, set())
    if worker is None and not want.split and holders and runs_from_a_copy(entry):
        # No device that holds the file has room: one that fits it whole takes a copy
        # (what fits one device is never split).
        without = [w for w in live.values() if w.node not in holders]
        worker, more = choose_worker(need, without, used)
        if worker is not None:
            why = f"no device holding the file has room: {worker.node} runs a copy of it"
            return worker, reasons + more, [why, *more]
        reasons += more
    return worker, reasons, []


def drafting(
    entry: pb.CatalogEntry, catalog: Mapping[str, pb.CatalogEntry], context: int
) -> tuple[str, int] | None:
    """The model's draft and what it adds on the device (its weights and its KV cache for
    the same context), when it has one the catalog knows."""
    draft = catalog.get(entry.draft) if entry.draft else None
    if draft is None:
        return None
    return draft.name, draft.facts.file_size_bytes + draft.facts.kv_bytes_per_token * context


def _no_standby(standby: Mapping[tuple[str, str], Worker]) -> str:
    if standby:
        return "every standby device that could take it serves it already"
    return (
        "no standby node (a node serving its own models takes no others): start one with "
        "`mesh-llm serve --standby`"
    )


def _without_model(
    live: Mapping[tuple[str, str], Worker], model: str, result: Plan
) -> Mapping[tuple[str, str], Worker]:
    """The workers that do not serve the model yet: a second replica on one device helps
    nothing."""
    holding = {(a.node, a.worker_id) for _, a in [*result.keep, *result.create] if a.model == model}
    return {k: w for k, w in live.items() if k not in holding} if holding else live


def _create(
    group: list[tuple[Worker, pb.Assignment]],
    used: dict[tuple[str, str], int],
    result: Plan,
) -> None:
    for w, a in group:
        used[w.key] += a.memory_bytes
        result.create.append((w.record, a))


def _free_devices(
    live: Mapping[tuple[str, str], Worker], used: Mapping[tuple[str, str], int]
) -> list[split.Device]:
    return [
        split.Device(w.node, w.worker_id, w.budget - used.get(key, 0))
        for key, w in live.items()
        if not w.draining and w.budget > used.get(key, 0)
    ]


def _shard_group(
    want: Want,
    model: MoeModel,
    context: int,
    files: Mapping[str, set[str]],
    live: Mapping[tuple[str, str], Worker],
    used: Mapping[tuple[str, str], int],
    moe: MoeInputs,
) -> tuple[list[tuple[Worker, pb.Assignment]], list[str]]:
    """One shard assignment per device of an expert-shard plan, or none with reasons."""
    if not files.get(want.model):
        return [], ["shards: no registry holds the file to write them from"]
    ranking = moe.rankings.get(want.model)
    if ranking is None or not ranking.layers:
        return [], ["shards: waiting for the registry to rank the experts"]
    order = [list(layer.experts) for layer in ranking.layers]
    chosen, reasons = plan_shards(
        model,
        _free_devices(live, used),
        order,
        force=want.split,
        min_experts=moe.smallest_allowed(want.model),
    )
    if chosen is None:
        return [], [f"shards: {r}" for r in reasons]
    specs = [
        pb.ShardSpec(
            shard_id=shard_id(want.model, layers),
            expert_count=len(layers[0]),
            layers=[pb.LayerExperts(experts=list(experts)) for experts in layers],
            core=chosen.experts.core,
        )
        for layers in chosen.experts.shards
    ]
    ids = [spec.shard_id for spec in specs]
    for spec in specs:
        spec.plan.extend(ids)
    parts = ", ".join(
        f"{d.name} {spec.expert_count}" for d, spec in zip(chosen.devices, specs, strict=True)
    )
    why = [
        f"expert shards over {len(specs)} devices ({parts} of {model.experts} experts, "
        f"core {chosen.experts.core}), ranked by {ranking.method}",
        *reasons,
    ]
    workers = [live[(d.node, d.worker_id)] for d in chosen.devices]
    group_id = assignment_id(want.model, want.origin, workers[0])
    return [
        (w, _shard_assignment(want, w, spec, model, context, group_id, why))
        for w, spec in zip(workers, specs, strict=True)
    ], why


def _shard_assignment(
    want: Want,
    worker: Worker,
    spec: pb.ShardSpec,
    model: MoeModel,
    context: int,
    group_id: str,
    reasons: list[str],
) -> pb.Assignment:
    return pb.Assignment(
        id=assignment_id(want.model, want.origin, worker),
        group_id=group_id,
        model=want.model,
        node=worker.node,
        worker_id=worker.worker_id,
        role=pb.ASSIGNMENT_ROLE_SHARD,
        context=context,
        memory_bytes=model.trunk_bytes + spec.expert_count * model.expert_bytes,
        reasons=reasons,
        origin=want.origin,
        shard=spec,
    )


def _replace_lost_shards(
    group: list[pb.Assignment],
    catalog: Mapping[str, pb.CatalogEntry],
    live: Mapping[tuple[str, str], Worker],
    used: dict[tuple[str, str], int],
    settings: PlacementSettings,
    moe: MoeInputs,
    result: Plan,
) -> None:
    """A shard of the group's plan that no live member holds (its node went away) goes to a
    free device that can hold it, with the same experts, when its record says which they
    are; the members still serving stay where they are."""
    first = group[0]
    entry = catalog.get(first.model)
    if entry is None:
        return
    model = moe_model(entry.facts, first.context, settings)
    held = {a.shard.shard_id for a in group}
    busy = {(a.node, a.worker_id) for a in group}
    for missing in [s for s in first.shard.plan if s not in held]:
        record = moe.record(first.model, missing)
        if model is None or record is None or not record.passed:
            continue
        spec = pb.ShardSpec()
        spec.CopyFrom(record.spec)
        spec.plan[:] = list(first.shard.plan)
        need = model.trunk_bytes + spec.expert_count * model.expert_bytes
        free = [w for key, w in live.items() if key not in busy]
        worker, _ = choose_worker(need, free, used)
        if worker is None:
            continue
        want = Want(first.model, first.origin, first.context)
        why = [f"replaces the lost shard {missing} ({spec.expert_count} experts)"]
        a = _shard_assignment(want, worker, spec, model, first.context, first.group_id, why)
        _create([(worker, a)], used, result)
        busy.add((worker.node, worker.worker_id))


def _split_group(
    want: Want,
    need: int,
    context: int,
    hosts: list[Worker],
    live: Mapping[tuple[str, str], Worker],
    used: Mapping[tuple[str, str], int],
    rtt: RttFn,
) -> tuple[list[tuple[Worker, pb.Assignment]], list[str]]:
    """The host's and peers' assignments of a split (peers first), or none with reasons."""
    if not hosts:  # the reasons already say where the file is not; nothing to search
        return [], []
    can_host = {(w.node, w.worker_id) for w in hosts}
    devices = [
        split.Device(key[0], key[1], free, w.rpc_version, key in can_host)
        for key, w in live.items()
        if not w.draining and (free := w.budget - used.get(key, 0)) > 0
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
    live: Mapping[tuple[str, str], Worker],
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
    entry: pb.CatalogEntry, nodes: set[str], workers: Iterable[Worker]
) -> tuple[list[Worker], list[str]]:
    """Where a model runs from its file: for a model from a local path, where a registry
    holds the file (elsewhere only from a copy, which `_place` falls back to); a fetchable
    one (a built-in) anywhere."""
    workers = list(workers)
    if entry.source.kind != pb.MODEL_SOURCE_KIND_PATH:
        return workers, []
    kept = [w for w in workers if w.node in nodes]
    reasons = []
    for w in workers:
        if len(reasons) == MAX_LISTED:
            break
        if w.node not in nodes:
            reasons.append(f"{w.node}/{w.worker_id}: does not have the file")
    return kept, reasons + _more(len(workers) - len(kept), "without the file")


MAX_LISTED = 5  # rejected devices named in a reason; the rest are counted


def _more(count: int, what: str) -> list[str]:
    extra = count - MAX_LISTED
    return [f"and {extra} more device{'s' if extra > 1 else ''} {what}"] if extra > 0 else []


def choose_worker(
    need: int, workers: Iterable[Worker], used: Mapping[tuple[str, str], int]
) -> tuple[Worker | None, list[str]]:
    """Among the workers `need` fits, the one with the highest measured memory bandwidth
    (`Device.memory_bandwidth_gbps`; not measured counts as 0), then the most room left after
    `need`, then node and worker id; and why. Only the MAX_LISTED rejected workers closest to
    fitting are named; the rest are counted, so a reason stays short in a mesh of thousands."""
    chosen: Worker | None = None
    best = (0.0, 0)  # the chosen one's bandwidth and room left
    draining: list[Worker] = []
    small: list[tuple[int, Worker]] = []
    room = used.get
    for w in workers:
        left = w.budget - room(w.key, 0)
        if w.draining:
            draining.append(w)
        elif left < need:
            small.append((left, w))
        elif (
            chosen is None
            or (w.gbps, left) > best
            or ((w.gbps, left) == best and w.key < chosen.key)
        ):
            best, chosen = (w.gbps, left), w
    closest = heapq.nlargest(MAX_LISTED, small, key=lambda item: item[0])
    reasons = [
        f"{w.node}/{w.worker_id}: needs {fmt_bytes(need)}, has {fmt_bytes(max(left, 0))} "
        f"of {fmt_bytes(w.budget)} free"
        for left, w in closest
    ]
    reasons += _more(len(small), "with less room")
    reasons += [f"{w.node}/{w.worker_id}: draining" for w in draining[:MAX_LISTED]]
    reasons += _more(len(draining), "draining")
    if chosen is None:
        return None, reasons or ["no worker in the mesh"]
    reasons.insert(
        0,
        f"{chosen.node}/{chosen.worker_id}: fits solo ({fmt_bytes(need)}), "
        f"{fmt_bytes(best[1] - need)} left after",
    )
    return chosen, reasons
