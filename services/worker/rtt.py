"""Round-trip times from this worker to the other nodes' workers, for split planning.

Every `interval_s` the probe times one `ping` round trip through each other node's RPC tunnel
(on an open connection: the path RPC itself takes, and a frozen worker does not answer) and
smooths the samples (EWMA).
A node that fails `MAX_FAILURES` probes in a row drops out of the report, which the scheduler
reads as "not measured": a split never keeps a peer it can no longer reach. The report is
written under the worker's lease only when a value moved enough to matter, so the store and
the planner see a few writes, not a stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from meshllm.core.lifecycle import LoopComponent
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import LeaseKeeper, PrefixCache, StoreFailure

logger = logging.getLogger(__name__)
ALPHA = 0.3  # weight of a new sample
MAX_FAILURES = 3


def smooth(previous: float | None, sample: float) -> float:
    return sample if previous is None else previous + ALPHA * (sample - previous)


def worth_publishing(old: dict[str, float], new: dict[str, float]) -> bool:
    """A node came or went, or a time moved by more than 20 % and 1 ms."""
    if old.keys() != new.keys():
        return True
    return any(abs(new[k] - old[k]) > max(1.0, 0.2 * old[k]) for k in new)


class RttProbe:
    """Smoothed RTT to each other node, from samples taken by `measure`."""

    def __init__(self, node: str, measure: Callable[[str], Awaitable[float | None]]) -> None:
        self._node = node
        self._measure = measure
        self.rtt_ms: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    async def sample(self, workers: Iterable[pb.WorkerRecord]) -> dict[str, float]:
        targets: dict[str, str] = {}
        for w in workers:
            if w.node != self._node and w.tunnel_address:
                targets.setdefault(w.node, w.tunnel_address)
        results = await asyncio.gather(*(self._measure(a) for a in targets.values()))
        for node, ms in zip(targets, results, strict=True):
            if ms is None:
                self._failures[node] = self._failures.get(node, 0) + 1
                if self._failures[node] >= MAX_FAILURES:
                    self.rtt_ms.pop(node, None)
            else:
                self._failures[node] = 0
                self.rtt_ms[node] = smooth(self.rtt_ms.get(node), ms)
        for node in list(self.rtt_ms):
            if node not in targets:
                del self.rtt_ms[node]
        return dict(self.rtt_ms)


class RttReporter(LoopComponent):
    """Samples every `interval_s` and publishes this worker's RttReport when it moved."""

    def __init__(
        self,
        probe: RttProbe,
        workers: PrefixCache[pb.WorkerRecord],
        lease: LeaseKeeper,
        key: str,
        record: pb.RttReport,
        interval_s: float,
    ) -> None:
        self._probe = probe
        self._workers = workers
        self._lease = lease
        self._key = key
        self._record = record
        self._interval_s = interval_s

    async def loop(self) -> None:
        await self._workers.ready.wait()
        published: dict[str, float] | None = None
        while True:
            now = await self._probe.sample(self._workers.items.values())
            if published is None or worth_publishing(published, now):
                self._record.rtt_ms.clear()
                self._record.rtt_ms.update(now)
                self._record.updated_unix = int(time.time())
                try:
                    await self._lease.publish(self._key, self._record)
                    published = now
                except StoreFailure as exc:
                    logger.warning("could not publish round-trip times: %s", exc)
            await asyncio.sleep(self._interval_s)
