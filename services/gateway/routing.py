"""Which replica serves a request: least outstanding requests first, replicas that failed
recently last, ties broken at random. Returns the whole ranking so the proxy can fail over."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from meshllm.core.proto.mesh.v1 import common_pb2 as pb


class Router:
    def __init__(self, suspect_for_s: float, rng: random.Random | None = None) -> None:
        self._suspect_for_s = suspect_for_s
        self._in_flight: dict[str, int] = {}
        self._suspect_until: dict[str, float] = {}
        self._rng = rng or random.Random()

    def rank(self, endpoints: Sequence[pb.Endpoint], now: float | None = None) -> list[pb.Endpoint]:
        now = time.monotonic() if now is None else now
        keyed = [
            (
                self._suspect_until.get(e.instance_id, 0.0) > now,
                self._in_flight.get(e.instance_id, 0),
                self._rng.random(),
                e,
            )
            for e in endpoints
        ]
        keyed.sort(key=lambda k: k[:3])
        return [k[3] for k in keyed]

    def started(self, endpoint: pb.Endpoint) -> None:
        self._in_flight[endpoint.instance_id] = self._in_flight.get(endpoint.instance_id, 0) + 1

    def finished(self, endpoint: pb.Endpoint, *, failed: bool = False) -> None:
        left = self._in_flight.get(endpoint.instance_id, 1) - 1
        if left > 0:
            self._in_flight[endpoint.instance_id] = left
        else:
            self._in_flight.pop(endpoint.instance_id, None)
        if failed:
            self._suspect_until[endpoint.instance_id] = time.monotonic() + self._suspect_for_s

    def in_flight(self, instance_id: str) -> int:
        return self._in_flight.get(instance_id, 0)
