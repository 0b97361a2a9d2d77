"""The worker's /metrics: its device's memory, its instances, its round trips to the other
nodes, how long models take to load, and each llama-server's own metrics re-exported with the
instance and model as labels (`meshllm_llama_<name>`).

Current state is read when Prometheus scrapes (`WorkerCollector`), never kept twice; the
llama-servers are asked in the background every few seconds (`LlamaScraper`), since a scrape
cannot wait on them."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator, Mapping

import aiohttp
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshllm.core.lifecycle import LoopComponent
from meshllm.core.metrics import PREFIX
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .supervisor import InstanceState, Supervisor

logger = logging.getLogger(__name__)

MODEL_LOAD = Histogram(
    f"{PREFIX}model_load_seconds",
    "From an instance's start to its first ready answer",
    ["model"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
LLAMA_NAME = re.compile(r"^llamacpp:([a-zA-Z_][a-zA-Z0-9_]*) ([0-9.eE+-]+|NaN|[+-]?Inf)$")


class LlamaScraper(LoopComponent):
    """Each ready llama-server's /metrics, every `interval_s`: instance id → name → value."""

    def __init__(
        self,
        supervisor: Supervisor,
        session: Callable[[], aiohttp.ClientSession],
        interval_s: float = 5.0,
    ) -> None:
        self._supervisor = supervisor
        self._session = session
        self._interval_s = interval_s
        self.values: dict[str, dict[str, float]] = {}

    async def loop(self) -> None:
        while True:
            ready = {
                i.spec.instance_id: i
                for i in self._supervisor.instances.values()
                if i.state == InstanceState.READY and i.launcher.serves_requests
            }
            found = await asyncio.gather(*(self._scrape(i.port) for i in ready.values()))
            self.values = {iid: v for iid, v in zip(ready, found, strict=True) if v}
            await asyncio.sleep(self._interval_s)

    async def _scrape(self, port: int) -> dict[str, float]:
        try:
            async with self._session().get(
                f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=3)
            ) as reply:
                return parse_llama_metrics(await reply.text()) if reply.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("llama-server on :%d gave no metrics: %s", port, exc)
            return {}


def parse_llama_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        found = LLAMA_NAME.match(line.strip())
        if found:
            values[found.group(1)] = float(found.group(2))
    return values


class WorkerCollector(Collector):
    def __init__(
        self,
        record: pb.WorkerRecord,
        reserved: Callable[[], int],
        rtt_ms: Callable[[], Mapping[str, float]],
        supervisor: Supervisor,
        llama: LlamaScraper,
    ) -> None:
        self._record = record
        self._reserved = reserved
        self._rtt_ms = rtt_ms
        self._supervisor = supervisor
        self._llama = llama

    def collect(self) -> Iterator[Metric]:
        node, device = self._record.node, self._record.device
        memory = GaugeMetricFamily(
            f"{PREFIX}device_memory_bytes",
            "A device's memory: total, what the mesh may use (budget), what its assignments "
            "take (reserved), and in use (used)",
            labels=["node", "device", "kind"],
        )
        for kind, value in (
            ("total", device.memory_total_bytes),
            ("budget", device.memory_budget_bytes),
            ("reserved", self._reserved()),
            ("used", max(0, device.memory_total_bytes - device.memory_free_bytes)),
        ):
            memory.add_metric([node, device.id, kind], value)
        yield memory
        instances = GaugeMetricFamily(
            f"{PREFIX}instances",
            "This worker's model processes, by model and state",
            labels=["node", "model", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for i in self._supervisor.instances.values():
            key = (i.spec.model, i.state.name.lower())
            counts[key] = counts.get(key, 0) + 1
        for (model, state), count in sorted(counts.items()):
            instances.add_metric([node, model, state], count)
        yield instances
        rtt = GaugeMetricFamily(
            f"{PREFIX}peer_rtt_seconds",
            "Smoothed round trip from this node to another node's worker",
            labels=["node", "peer"],
        )
        for peer, ms in sorted(self._rtt_ms().items()):
            rtt.add_metric([node, peer], ms / 1000)
        yield rtt
        yield from self._llama_metrics(node)

    def _llama_metrics(self, node: str) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        models = {iid: i.spec.model for iid, i in self._supervisor.instances.items()}
        for instance, values in sorted(self._llama.values.items()):
            for name, value in sorted(values.items()):
                family = families.get(name)
                if family is None:
                    family = families[name] = llama_family(name)
                family.add_metric([node, instance, models.get(instance, "")], value)
        yield from families.values()


def llama_family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    """llama-server's `llamacpp:NAME` as `meshllm_llama_NAME`: a counter where its name says
    so (`_total`), else a gauge."""
    help_text = f"llama-server's llamacpp:{name}, per instance"
    labels = ["node", "instance", "model"]
    if name.endswith("_total"):
        return CounterMetricFamily(f"{PREFIX}llama_{name}", help_text, labels=labels)
    return GaugeMetricFamily(f"{PREFIX}llama_{name}", help_text, labels=labels)
