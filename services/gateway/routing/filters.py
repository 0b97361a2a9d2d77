"""Filters: which replicas a request prefers. What a filter leaves out is not lost: the
profile ranks it after the preferred ones, since a replica that failed a moment ago still
beats no answer."""

from __future__ import annotations

from collections.abc import Sequence

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .base import ReplicaStats, RouteRequest


class HealthyFilter:
    """`healthy-filter`: replicas that are not cooling down after a failure."""

    def filter(
        self, request: RouteRequest, replicas: Sequence[pb.Endpoint], stats: ReplicaStats,
        now: float,
    ) -> list[pb.Endpoint]:  # fmt: skip
        return [e for e in replicas if not stats.cooling(e.instance_id, now)]


class FreeSlotFilter:
    """`free-slot-filter`: replicas with a free llama-server slot (in flight < slots), so a
    request is not queued behind others while another replica idles. A replica that does
    not say how many slots it has counts as free."""

    def filter(
        self, request: RouteRequest, replicas: Sequence[pb.Endpoint], stats: ReplicaStats,
        now: float,
    ) -> list[pb.Endpoint]:  # fmt: skip
        return [
            e for e in replicas
            if e.slots <= 0 or stats.in_flight.get(e.instance_id, 0) < e.slots
        ]  # fmt: skip
