"""How many replicas the mesh itself wants of each model: a pure function of the demand
records and the replicas already placed.

Demand comes in two kinds. A node's `--model` pins a replica for as long as the node lives.
Traffic is recorded by the gateways: one record per gateway and model, carrying a recent
request rate and hanging on a lease nobody keeps alive, so it decays by itself when the
requests stop. Traffic asks for *mesh replicas* (origin ""), which go only to standby nodes
(nodes that pin no model of their own), never two on one device:

- A model with live traffic that no node pins gets one mesh replica: an unserved model a
  client asks for, or one whose last server went away (and its pin with its node), is
  started on a standby.
- A model is **hot** when its load per replica (requests per minute over all its replicas)
  reaches the threshold T = max(busy_rpm, hot_factor * the coolest other model's load): it
  gets one more mesh replica, up to max_replicas in all.
- A model with more mesh replicas than its base gives one back when its load on one replica
  fewer would stay under T / 2.

Hysteresis: growing from r to r + 1 replicas happens at rpm / r >= T; giving one back needs
rpm / r < T / 2, which cannot hold right after the growth; giving one back leaves a load
under T / 2 < T, which does not grow again. T itself moves with the other models' loads, so
every change also waits `dwell_s` after the model's newest mesh replica was created, and
changes one replica at a time. The base replica is never given back while traffic lives: a
model with live demand always keeps a server when any device can hold it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .settings import DemandSettings


@dataclass(frozen=True)
class ModelDemand:
    """A model's traffic, summed over the gateways' live records."""

    model: str
    requests_per_minute: float = 0.0
    last_request_unix: int = 0
    gateways: int = 0
    pins: int = 0  # nodes that pin it with --model


@dataclass(frozen=True)
class Replicas:
    """A model's replicas placed now: pinned by nodes, and asked for by the mesh."""

    pinned: int = 0
    mesh: int = 0
    newest_mesh_unix: int = 0  # when its newest mesh replica was created

    @property
    def total(self) -> int:
        return self.pinned + self.mesh


@dataclass(frozen=True)
class Decision:
    replicas: int  # mesh replicas wanted
    load: float  # requests per minute per replica, with the replicas wanted
    why: str


def traffic_by_model(demands: Iterable[pb.Demand]) -> dict[str, ModelDemand]:
    """The unpinned (traffic) records, summed per model, with the model's pins."""
    rpm: dict[str, float] = {}
    last: dict[str, int] = {}
    gateways: dict[str, int] = {}
    demands = list(demands)
    pins = pins_by_model(demands)
    for d in demands:
        if d.pinned:
            continue
        rate = d.requests_per_minute  # from the store: a NaN or infinite rate counts as none
        rpm[d.model] = rpm.get(d.model, 0.0) + (rate if 0 < rate < math.inf else 0.0)
        last[d.model] = max(last.get(d.model, 0), d.last_request_unix)
        gateways[d.model] = gateways.get(d.model, 0) + 1
    return {m: ModelDemand(m, rpm[m], last[m], gateways[m], pins.get(m, 0)) for m in rpm}


def pins_by_model(demands: Iterable[pb.Demand]) -> dict[str, int]:
    """The replicas nodes pin, per model: one per node, or one per device a pin names (every
    worker of a node publishes the node's pins, so records are not replicas)."""
    pins: dict[str, set[tuple[str, str]]] = {}
    for d in demands:
        if d.pinned:
            pins.setdefault(d.model, set()).add((d.origin, d.worker_id))
    return {m: len(p) for m, p in pins.items()}


def mesh_replicas(
    traffic: Mapping[str, ModelDemand],
    placed: Mapping[str, Replicas],
    settings: DemandSettings,
    now: float,
) -> dict[str, Decision]:
    """The mesh replicas wanted for each model with live traffic."""
    loads = {
        m: d.requests_per_minute / placed[m].total
        for m, d in traffic.items()
        if m in placed and placed[m].total > 0
    }
    return {
        m: _decide(d, placed.get(m, Replicas()), loads, settings, now) for m, d in traffic.items()
    }


def _decide(
    demand: ModelDemand,
    now_placed: Replicas,
    loads: Mapping[str, float],
    settings: DemandSettings,
    now: float,
) -> Decision:
    rpm = demand.requests_per_minute
    base = 0 if demand.pins else 1  # a pinning node keeps a replica of its own
    have = max(now_placed.mesh, base)
    total = now_placed.pinned + have
    others = [load for m, load in loads.items() if m != demand.model]
    coolest = min(others, default=0.0)
    threshold = max(settings.busy_rpm, settings.hot_factor * coolest)
    settled = now - now_placed.newest_mesh_unix >= settings.dwell_s
    load = rpm / max(total, 1)
    rate = f"{rpm:.1f} requests/min over {total} replica{'s' if total != 1 else ''}"
    bound = f"hot at {threshold:.1f}/min per replica"
    if load >= threshold and total < settings.max_replicas and settled:
        return Decision(have + 1, rpm / (total + 1), f"hot: {rate} ({bound}): one more replica")
    if have > base and rpm / (total - 1) < threshold / 2 and settled:
        return Decision(have - 1, rpm / (total - 1), f"cooled: {rate} ({bound}): one fewer")
    if now_placed.mesh < base:
        why = "requested, no node serves it: a standby starts it"
    elif load >= threshold and total >= settings.max_replicas:
        why = f"{rate}, at the cap of {settings.max_replicas} replicas"
    elif not settled and (load >= threshold or have > base):
        why = f"{rate}; waiting {settings.dwell_s:.0f}s after the last change"
    else:
        why = f"{rate} ({bound})"
    return Decision(have, load, why)


def placed_replicas(assignments: Iterable[pb.Assignment]) -> dict[str, Replicas]:
    """The replica groups placed now, per model (assignments vanish with their worker's
    lease, so these are live)."""
    pinned: dict[str, set[str]] = {}
    mesh: dict[str, set[str]] = {}
    newest: dict[str, int] = {}
    for a in assignments:
        group = a.group_id or a.id
        if a.origin:
            pinned.setdefault(a.model, set()).add(group)
        else:
            mesh.setdefault(a.model, set()).add(group)
            newest[a.model] = max(newest.get(a.model, 0), a.created_unix)
    return {
        m: Replicas(len(pinned.get(m, ())), len(mesh.get(m, ())), newest.get(m, 0))
        for m in pinned.keys() | mesh.keys()
    }
