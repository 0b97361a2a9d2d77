"""Solo placement as a pure function of a snapshot: which worker serves which model.

A model fits a worker when its weights + KV cache for the context + headroom fit in what the
worker's device budget has left after the assignments it already holds. Among the workers it
fits, the one with the most memory left wins (ties: node, worker id). Every rejected worker
gets a reason, kept on the model's PlacementStatus so "why is my model pending" has an answer.
Pipeline splits and MoE shards will extend `plan` for models that fit nowhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .settings import PlacementSettings

GiB = 2**30


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


def assignment_id(model: str, worker: pb.WorkerRecord) -> str:
    digest = hashlib.sha1(f"{model}@{worker.node}/{worker.worker_id}".encode()).hexdigest()
    return f"{digest[:10]}"


@dataclass
class Plan:
    keep: list[tuple[str, pb.Assignment]] = field(default_factory=list)
    create: list[tuple[pb.WorkerRecord, pb.Assignment]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # assignment keys
    status: dict[str, pb.PlacementStatus] = field(default_factory=dict)


def plan(
    wanted: Mapping[str, int],
    catalog: Mapping[str, pb.CatalogEntry],
    workers: Iterable[pb.WorkerRecord],
    assignments: Mapping[str, pb.Assignment],
    settings: PlacementSettings,
) -> Plan:
    """`wanted`: model → wanted context (0 = default). `assignments`: key → Assignment."""
    result = Plan()
    live = {(w.node, w.worker_id): w for w in workers}
    used: dict[tuple[str, str], int] = {k: 0 for k in live}
    served: set[str] = set()
    for key, a in sorted(assignments.items()):
        where = (a.node, a.worker_id)
        if a.model in wanted and where in live and a.model not in served:
            result.keep.append((key, a))
            used[where] += a.memory_bytes
            served.add(a.model)
        else:
            result.delete.append(key)
    for model in sorted(wanted):
        if model in served:
            result.status[model] = pb.PlacementStatus(
                model=model, placed=True, reasons=["already assigned"]
            )
            continue
        entry = catalog.get(model)
        if entry is None:
            result.status[model] = pb.PlacementStatus(
                model=model, placed=False, reasons=["not in the catalog: register it first"]
            )
            continue
        context = context_for(entry.facts, wanted[model], settings)
        need = memory_needed(entry.facts, context, settings)
        worker, reasons = choose_worker(need, live.values(), used)
        if worker is None:
            result.status[model] = pb.PlacementStatus(model=model, placed=False, reasons=reasons)
            continue
        where = (worker.node, worker.worker_id)
        used[where] += need
        result.create.append(
            (
                worker,
                pb.Assignment(
                    id=assignment_id(model, worker),
                    model=model,
                    node=worker.node,
                    worker_id=worker.worker_id,
                    role=pb.ASSIGNMENT_ROLE_SOLO,
                    context=context,
                    memory_bytes=need,
                    reasons=reasons,
                ),
            )
        )
        result.status[model] = pb.PlacementStatus(model=model, placed=True, reasons=reasons)
    return result


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
