"""Scorers: each gives every replica a score in [0, 1]; the profile weights and sums them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .base import ReplicaStats, RouteRequest


class QueueScorer:
    """`queue-scorer`: fewer requests in flight scores higher, scaled between the busiest
    (0) and the idlest (1) replica; equal queues score 1 alike."""

    def score(
        self, request: RouteRequest, replicas: Sequence[pb.Endpoint], stats: ReplicaStats,
        now: float,
    ) -> list[float]:  # fmt: skip
        queues = [stats.in_flight.get(e.instance_id, 0) for e in replicas]
        low, high = min(queues, default=0), max(queues, default=0)
        if high == low:
            return [1.0] * len(replicas)
        return [(high - q) / (high - low) for q in queues]


def rendezvous_weight(session: str, instance_id: str) -> int:
    digest = hashlib.blake2b(f"{session}\0{instance_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class SessionAffinityScorer:
    """`session-affinity-scorer`: 1 for the replica a session's key hashes to, 0 for the
    others (rendezvous hashing: the replica with the highest hash of key and instance id), so
    a conversation keeps landing where its KV cache is, and a replica that leaves or joins
    moves only the sessions it wins or loses. Requests without a session score 1 alike."""

    def score(
        self, request: RouteRequest, replicas: Sequence[pb.Endpoint], stats: ReplicaStats,
        now: float,
    ) -> list[float]:  # fmt: skip
        if not request.session or not replicas:
            return [1.0] * len(replicas)
        weights = [rendezvous_weight(request.session, e.instance_id) for e in replicas]
        best = max(weights)
        return [1.0 if w == best else 0.0 for w in weights]
