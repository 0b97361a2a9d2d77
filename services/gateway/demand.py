"""The demand this gateway's requests show, recorded in the store for the scheduler.

Every request for a model the mesh knows (served or not) counts. Counting is local and costs
nothing on the request path; the store sees at most one write per model per `write_interval_s`
(the first request for a model is written at once, so a standby starts loading it without
waiting). Each record carries the requests of the last minute and hangs on a fresh lease that
nobody keeps alive: when the requests stop, it expires by itself after `ttl_s`, and with it the
replicas the mesh started for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from pydantic import Field

from meshllm.core import keys
from meshllm.core.config import Section
from meshllm.core.lifecycle import LoopComponent
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, StoreFailure

from . import metrics

logger = logging.getLogger(__name__)


class TrafficSettings(Section):
    write_interval_s: float = Field(
        5.0, gt=0, description="a model's demand record is written at most this often"
    )
    ttl_s: int = Field(
        300,
        ge=2,
        description="a demand record expires this long after its last request; the replicas "
        "started for it are then given back",
    )
    window_s: int = Field(60, ge=1, description="the request rate is counted over this window")


class RequestRate:
    """Requests counted in one-second buckets over a sliding window."""

    def __init__(self, window_s: int) -> None:
        self._window_s = window_s
        self._buckets: deque[list[int]] = deque()  # [second, requests]
        self.last_unix = 0.0

    def add(self, now: float) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([second, 1])
        self.last_unix = now
        self._expire(second)

    def per_minute(self, now: float) -> float:
        self._expire(int(now))
        return sum(n for _, n in self._buckets) * 60.0 / self._window_s

    def _expire(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window_s:
            self._buckets.popleft()


class DemandRecorder(LoopComponent):
    def __init__(
        self, store: EtcdStore, mesh: str, instance: str, settings: TrafficSettings
    ) -> None:
        self._store = store
        self._mesh = mesh
        self._origin = f"gateway-{instance}"
        self._settings = settings
        self._rates: dict[str, RequestRate] = {}
        self._pending: set[str] = set()  # requests since its last write
        self._written: dict[str, float] = {}  # model → when its record was last written
        self._wake = asyncio.Event()

    def record(self, model: str) -> None:
        """One request for a model the mesh knows."""
        now = time.time()
        rate = self._rates.get(model)
        if rate is None:
            rate = self._rates[model] = RequestRate(self._settings.window_s)
        rate.add(now)
        self._pending.add(model)
        if now - self._written.get(model, 0.0) >= self._settings.write_interval_s:
            self._wake.set()

    def due(self, now: float) -> list[str]:
        interval = self._settings.write_interval_s
        return sorted(m for m in self._pending if now - self._written.get(m, 0.0) >= interval)

    async def loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.write_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except StoreFailure as exc:
                logger.warning("could not record demand (%s); will retry", exc)
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        now = time.time()
        models = self.due(now)
        if not models:
            return
        lease = await self._store.grant_lease(self._settings.ttl_s)  # never kept alive
        for model in models:
            rate = self._rates[model]
            record = pb.Demand(
                model=model,
                origin=self._origin,
                requests_per_minute=round(rate.per_minute(now), 3),
                last_request_unix=int(rate.last_unix),
            )
            await self._store.put(
                keys.demand_entry(self._mesh, model, self._origin), record, lease=lease
            )
            self._pending.discard(model)
            self._written[model] = now
            metrics.DEMAND_WRITES.inc()
        self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Models without requests for longer than a record lives are no longer tracked."""
        for model, rate in list(self._rates.items()):
            if model not in self._pending and now - rate.last_unix > self._settings.ttl_s:
                del self._rates[model]
                self._written.pop(model, None)
