"""The gateway's Prometheus metrics (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.samples import Sample

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "mesh_gateway_requests_total", "Inference requests answered", ["model", "route", "status"]
)
ERRORS = Counter(
    "mesh_gateway_request_errors_total",
    "Inference requests that failed",
    ["model", "route", "reason"],
)
LATENCY = Histogram(
    "mesh_gateway_request_duration_seconds",
    "Request time, end to end",
    ["model", "route"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "mesh_gateway_ttft_seconds",
    "Time to the first upstream byte",
    ["model", "route"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter("mesh_gateway_tokens_total", "Tokens generated or read", ["model", "kind"])
IN_FLIGHT = Gauge("mesh_gateway_in_flight_requests", "Requests being served", ["model"])
DEMAND_WRITES = Counter(
    "mesh_gateway_demand_writes_total", "Demand records this gateway wrote to the store"
)
RETRIES = Counter(
    "mesh_gateway_retries_total", "Upstream attempts that failed before a byte", ["model"]
)
FAILOVERS = Counter(
    "mesh_gateway_failovers_total",
    "Requests answered by another replica after one failed before its first byte",
    ["model"],
)


def routing_counts() -> dict[str, dict[str, float]]:
    """This gateway's counts per model since it started, read back from its own metrics:
    requests, failures (answered 5xx), retries, failovers and in-flight."""
    counts: dict[str, dict[str, float]] = {}

    def add(model: str, what: str, value: float) -> None:
        if model != "unknown":
            row = counts.setdefault(model, dict.fromkeys(ROUTING_FIELDS, 0.0))
            row[what] += value

    for sample in _samples(REQUESTS, "_total"):
        add(sample.labels["model"], "requests", sample.value)
        if sample.labels["status"].startswith("5"):
            add(sample.labels["model"], "failures", sample.value)
    for sample in _samples(RETRIES, "_total"):
        add(sample.labels["model"], "retries", sample.value)
    for sample in _samples(FAILOVERS, "_total"):
        add(sample.labels["model"], "failovers", sample.value)
    for sample in _samples(IN_FLIGHT, ""):
        add(sample.labels["model"], "in_flight", sample.value)
    return counts


ROUTING_FIELDS = ("requests", "failures", "retries", "failovers", "in_flight")


def _samples(metric: Counter | Gauge, suffix: str) -> list[Sample]:
    return [s for family in metric.collect() for s in family.samples if s.name.endswith(suffix)]
