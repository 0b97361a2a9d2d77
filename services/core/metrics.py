"""What every service's /metrics shares: the one prefix of the mesh's metric names, and
`meshllm_build_info`. Names follow Prometheus's rules (snake_case, base units, `_total` on
counters); labels stay bounded — a model label names a model the mesh knows (else "unknown"),
a node label a member of the mesh — so hostile input cannot grow a series per request."""

from __future__ import annotations

from prometheus_client import Gauge

PREFIX = "meshllm_"

BUILD_INFO = Gauge(
    f"{PREFIX}build_info",
    "Always 1: the version of the service answering, and the llama.cpp build it runs",
    ["service", "version", "llama_build"],
)


def record_build(service: str, version: str, llama_build: str = "") -> None:
    BUILD_INFO.labels(service, version, llama_build).set(1)
