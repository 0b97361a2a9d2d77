"""The scheduler's /metrics: what the leader decided and how long planning took."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from meshllm.core.metrics import PREFIX

PLACEMENT_DECISIONS = Counter(
    f"{PREFIX}placement_decisions_total",
    "Assignments the leader wrote (assign) or took back (remove)",
    ["action"],
)
MODELS = Gauge(
    f"{PREFIX}models",
    "Models someone wants, by whether every replica they asked for is placed",
    ["state"],
)
PLAN_DURATION = Histogram(
    f"{PREFIX}plan_duration_seconds",
    "One plan of the whole mesh",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
