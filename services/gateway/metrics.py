"""The gateway's Prometheus metrics (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
