"""Prometheus metrics of a running `mesh-llm serve`: after some traffic, every name
docs/METRICS.md lists is a family on some service's /metrics (one with labels shows samples
once something happened: a single node has no peers, and nothing failed over), and a flood
of requests naming models that do not exist adds no label values."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import ServeProcess, local_serve

pytestmark = pytest.mark.e2e

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "METRICS.md"


def documented() -> list[str]:
    return re.findall(r"^\| `(meshllm_[a-z_<>]+)` \|", METRICS_DOC.read_text(), re.M)


@pytest.fixture(scope="module")
def serve(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    running = local_serve(tmp_path_factory.mktemp("metrics"), tiny_model)
    try:
        running.wait_event("model_ready")
        yield running
    finally:
        running.stop()


def service_port(serve: ServeProcess, kind: str) -> int:
    """The probe port a service of the serve listens on (its MESH_HTTP_PORT)."""
    environ = Path(f"/proc/{serve.pid_of(kind)}/environ").read_bytes().split(b"\0")
    (port,) = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"MESH_HTTP_PORT=")]
    return int(port)


def scrape(serve: ServeProcess) -> str:
    pages = [httpx.get(f"{serve.api.removesuffix('/v1')}/metrics", timeout=10).text]
    for kind in ("worker", "scheduler", "registry"):
        port = service_port(serve, kind)
        pages.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    return "\n".join(pages)


def traffic(serve: ServeProcess, model: str) -> None:
    client = serve.client()
    for stream in (False, True):
        reply = client.chat.completions.create(
            model=model,
            max_tokens=8,
            stream=stream,
            messages=[{"role": "user", "content": "hi"}],
        )
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
    httpx.post(f"{serve.api}/chat/completions", content=b"{not json", timeout=10)


def test_every_documented_metric_is_exported_after_traffic(
    serve: ServeProcess, tiny_model: Path
) -> None:
    traffic(serve, tiny_model.stem)
    names = documented()
    assert len(names) >= 19
    deadline = time.monotonic() + 30  # llama-server's own are fetched every few seconds
    while True:
        text = scrape(serve)
        exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        missing = [
            n
            for n in names
            if not any(re.fullmatch(n.replace("<name>", "[a-z_]+"), e) for e in exported)
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"documented but not exported: {missing}"
    assert re.search(r'^meshllm_llama_tokens_predicted_total\{instance="', text, re.M)
    assert re.search(r'^meshllm_build_info\{.*service="worker".*\} 1', text, re.M)


def test_hostile_model_names_add_no_label_values(serve: ServeProcess, tiny_model: Path) -> None:
    for _ in range(60):
        name = f"x{secrets.token_hex(8)}\u202e<script>"
        reply = httpx.post(
            f"{serve.api}/chat/completions",
            json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 404
    text = httpx.get(f"{serve.api.removesuffix('/v1')}/metrics", timeout=10).text
    models = set(re.findall(r'model="([^"]*)"', text))
    assert models <= {tiny_model.stem, "unknown"}, models


def test_the_console_reports_this_nodes_llama_servers(
    serve: ServeProcess, tiny_model: Path
) -> None:
    traffic(serve, tiny_model.stem)
    (runtime,) = httpx.get(f"{serve.console}/api/runtime/llama", timeout=10).json()
    assert runtime["model"] == tiny_model.stem and runtime["error"] == ""
    assert runtime["slots"] and all(s["busy"] in (True, False) for s in runtime["slots"])
    assert runtime["metrics"]["tokens_predicted_total"] > 0  # the traffic above
