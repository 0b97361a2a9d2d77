"""What routing plugins see and share: the request's routing facts, the replicas' request
stats, and the three plugin kinds.

A profile runs filters (which replicas are preferred), scorers (each a score in [0, 1] per
replica, weighted) and one picker (the order). Plugins are pure functions of what they are
given, so each is tested with a table of cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meshllm.core.proto.mesh.v1 import common_pb2 as pb


@dataclass(frozen=True)
class RouteRequest:
    model: str
    session: str = ""  # the session key (see session_key); "" when the request has none


@dataclass
class Failures:
    count: int = 0  # failures in a row
    until: float = 0.0  # monotonic time the replica's cooldown ends


@dataclass
class ReplicaStats:
    """What the gateway knows of each replica from the requests it sent: how many are in
    flight, and its failures in a row with the cooldown they earned. A failure's cooldown is
    `base_s` doubled for every failure in a row before it, up to `max_s`; a success ends it,
    and so does a quiet `max_s` after the cooldown."""

    base_s: float
    max_s: float
    in_flight: dict[str, int] = field(default_factory=dict)
    failures: dict[str, Failures] = field(default_factory=dict)

    def started(self, instance_id: str) -> None:
        self.in_flight[instance_id] = self.in_flight.get(instance_id, 0) + 1

    def finished(self, instance_id: str, *, failed: bool, now: float) -> None:
        left = self.in_flight.get(instance_id, 1) - 1
        if left > 0:
            self.in_flight[instance_id] = left
        else:
            self.in_flight.pop(instance_id, None)
        if not failed:
            self.failures.pop(instance_id, None)
            return
        self._prune(now)
        record = self.failures.setdefault(instance_id, Failures())
        record.count += 1
        record.until = now + self.cooldown_s(record.count)

    def _prune(self, now: float) -> None:
        """Forget failures whose cooldown ended long ago (the replica may be gone)."""
        stale = [i for i, r in self.failures.items() if r.until + self.max_s < now]
        for instance_id in stale:
            del self.failures[instance_id]

    def cooldown_s(self, failures_in_a_row: int) -> float:
        return min(self.max_s, self.base_s * 2 ** (failures_in_a_row - 1))

    def cooling(self, instance_id: str, now: float) -> bool:
        record = self.failures.get(instance_id)
        return record is not None and record.until > now


class Filter(Protocol):
    def filter(
        self, request: RouteRequest, replicas: Sequence[pb.Endpoint], stats: ReplicaStats,
        now: float,
    ) -> list[pb.Endpoint]: ...  # fmt: skip


class Scorer(Protocol):
    def score(
        self, request: RouteRequest, replicas: Sequence[pb.Endpoint], stats: ReplicaStats,
        now: float,
    ) -> list[float]: ...  # fmt: skip


class Picker(Protocol):
    def order(self, scored: Sequence[tuple[float, pb.Endpoint]]) -> list[pb.Endpoint]: ...
