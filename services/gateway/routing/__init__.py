"""Which replica serves a request: a profile of filters, weighted scorers and a picker over
the request stats this gateway keeps (see profile.py). Returns the whole ranking so the
proxy can fail over down it."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .base import ReplicaStats, RouteRequest
from .profile import RoutingSettings, build_profile
from .session import session_key

__all__ = ["RouteRequest", "Router", "RoutingSettings", "session_key"]


class Router:
    def __init__(self, settings: RoutingSettings, rng: random.Random | None = None) -> None:
        self.profile = build_profile(settings, rng)
        self.stats = ReplicaStats(settings.cooldown_s, settings.max_cooldown_s)

    def rank(
        self,
        request: RouteRequest,
        endpoints: Sequence[pb.Endpoint],
        now: float | None = None,
    ) -> list[pb.Endpoint]:
        now = time.monotonic() if now is None else now
        return self.profile.run(request, endpoints, self.stats, now)

    def started(self, endpoint: pb.Endpoint) -> None:
        self.stats.started(endpoint.instance_id)

    def finished(self, endpoint: pb.Endpoint, *, failed: bool = False) -> None:
        self.stats.finished(endpoint.instance_id, failed=failed, now=time.monotonic())

    def in_flight(self, instance_id: str) -> int:
        return self.stats.in_flight.get(instance_id, 0)
