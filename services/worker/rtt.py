"""Round-trip times from this worker to the other nodes' workers, for split planning.

Every `interval_s` the probe times one `ping` round trip through other nodes' RPC tunnels
(on an open connection: the path RPC itself takes, and a frozen worker does not answer) and
smooths the samples (EWMA). A round probes at most `per_round` nodes, so a worker's probes
stay bounded however big the mesh grows (all-pairs probing of 1,000 nodes every 2 s would be
half a million pings a second): every node while they fit, else nodes never measured first,
then those that just failed, then those measured longest ago — a new node is measured at
once, a failure confirmed (or not) in the next rounds, and the rest re-measured in turn.
A node that fails `MAX_FAILURES` probes in a row drops out of the report, which the scheduler
reads as "not measured": a split never keeps a peer it can no longer reach. The report is
written under the worker's lease only when a value moved enough to matter, so the store and
the planner see a few writes, not a stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence

from meshllm.core.lifecycle import LoopComponent
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import LeaseKeeper, PrefixCache, StoreFailure

logger = logging.getLogger(__name__)
ALPHA = 0.3  # weight of a new sample
MAX_FAILURES = 3
PER_ROUND = 32  # the most nodes one round probes


def smooth(previous: float | None, sample: float) -> float:
    return sample if previous is None else previous + ALPHA * (sample - previous)


def worth_publishing(old: dict[str, float], new: dict[str, float]) -> bool:
    """A node came or went, or a time moved by more than 20 % and 1 ms."""
    if old.keys() != new.keys():
        return True
    return any(abs(new[k] - old[k]) > max(1.0, 0.2 * old[k]) for k in new)


def due_nodes(
    nodes: Sequence[str],
    probed_at: Mapping[str, float],
    confirming: Collection[str],
    per_round: int,
) -> list[str]:
    """The nodes this round probes: all of them when they fit `per_round`; else those never
    probed, then those that just failed (to confirm it), then those probed longest ago."""
    if len(nodes) <= per_round:
        return list(nodes)

    def urgency(node: str) -> tuple[bool, bool, float]:
        return node in probed_at, node not in confirming, probed_at.get(node, 0.0)

    return sorted(nodes, key=urgency)[:per_round]


class RttProbe:
    """Smoothed RTT to each other node, from samples taken by `measure`."""

    def __init__(
        self,
        node: str,
        measure: Callable[[str], Awaitable[float | None]],
        per_round: int = PER_ROUND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._node = node
        self._measure = measure
        self._per_round = per_round
        self._clock = clock
        self.rtt_ms: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._probed_at: dict[str, float] = {}

    async def sample(self, workers: Iterable[pb.WorkerRecord]) -> dict[str, float]:
        targets: dict[str, str] = {}
        for w in workers:
            if w.node != self._node and w.tunnel_address:
                targets.setdefault(w.node, w.tunnel_address)
        confirming = {n for n, count in self._failures.items() if 0 < count < MAX_FAILURES}
        due = due_nodes(list(targets), self._probed_at, confirming, self._per_round)
        results = await asyncio.gather(*(self._measure(targets[n]) for n in due))
        now = self._clock()
        for node, ms in zip(due, results, strict=True):
            self._probed_at[node] = now
            if ms is None:
                self._failures[node] = self._failures.get(node, 0) + 1
                if self._failures[node] >= MAX_FAILURES:
                    self.rtt_ms.pop(node, None)
            else:
                self._failures[node] = 0
                self.rtt_ms[node] = smooth(self.rtt_ms.get(node), ms)
        for gone in [n for n in self._probed_at if n not in targets]:
            self.rtt_ms.pop(gone, None)
            self._failures.pop(gone, None)
            del self._probed_at[gone]
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
