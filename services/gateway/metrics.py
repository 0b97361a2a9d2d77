"""The gateway's Prometheus metrics (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.samples import Sample

from meshllm.core.metrics import PREFIX

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5)

REQUESTS = Counter(
    f"{PREFIX}requests_total", "Inference requests answered", ["model", "route", "status"]
)
ERRORS = Counter(
    f"{PREFIX}request_errors_total",
    "Inference requests that failed, by the error's code",
    ["model", "route", "reason"],
)
LATENCY = Histogram(
    f"{PREFIX}request_duration_seconds",
    "Request time, end to end",
    ["model", "route"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    f"{PREFIX}time_to_first_token_seconds",
    "From the request to the first byte of the replica's answer",
    ["model", "route"],
    buckets=_LATENCY_BUCKETS,
)
INTER_TOKEN = Histogram(
    f"{PREFIX}inter_token_seconds",
    "Time between the tokens of a streamed answer",
    ["model"],
    buckets=_TOKEN_BUCKETS,
)
TOKENS = Counter(
    f"{PREFIX}tokens_total", "Tokens read (in) and generated (out)", ["model", "direction"]
)
IN_FLIGHT = Gauge(f"{PREFIX}in_flight_requests", "Requests being served", ["model"])
DEMAND_WRITES = Counter(
    f"{PREFIX}demand_writes_total", "Demand records this gateway wrote to the store"
)
RETRIES = Counter(
    f"{PREFIX}retries_total", "Attempts on a replica that failed before its first byte", ["model"]
)
FAILOVERS = Counter(
    f"{PREFIX}failovers_total",
    "Requests answered by another replica after one failed before its first byte",
    ["model"],
)
ROUTING = Counter(
    f"{PREFIX}routing_decisions_total",
    "Where requests were sent: a replica on this node, one on another node, or none",
    ["model", "outcome"],
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
