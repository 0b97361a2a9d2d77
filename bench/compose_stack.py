"""The container figures: image size, image build time with the layer cache warm, compose
stack start to the first answered request, and the time to first token the gateway adds in
compose against the same under `mesh-llm serve`.

The compose stack (deploy/docker-compose.yml, podman where no Docker engine runs) serves one
GGUF with one llama-server slot and thread, as the serve side does. Both sides are measured by
bench/gateway_overhead.py at one stream: under serve, the gateway against llama-server
directly; in compose, the gateway against the worker's relay (llama-server listens on the
worker container's loopback, so the relay is the nearest the host gets to it), which is the
path every request takes after the gateway there. A cold build is measured separately
(`time make image` after `podman system prune -af`), since it means discarding every cache.

    .venv/bin/python bench/compose_stack.py --markdown
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from compose import ComposeProject, build_image, container_engine, wait_until  # noqa: E402

from meshllm.cli.network import lan_address  # noqa: E402
from meshllm.core.ports import free_port  # noqa: E402

DEFAULT_MODEL = Path.home() / ".cache" / "mesh-llm" / "models" / "smollm2-135m-instruct.gguf"
OVERHEAD = [sys.executable, str(REPO / "bench" / "gateway_overhead.py")]


def log(text: str) -> None:
    print(f"[compose-bench] {text}", file=sys.stderr, flush=True)


def build_figures(engine: str) -> dict[str, Any]:
    log("building the image with the layer cache warm …")
    started = time.monotonic()
    image = build_image("cpu")
    seconds = time.monotonic() - started
    size = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"image": image, "cached_build_s": round(seconds, 1), "image_bytes": int(size)}


def chat_once(port: int, model: str) -> bool:
    reply = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    return reply.status_code == 200


def overhead(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run([*OVERHEAD, *argv, "--json"], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gateway_overhead.py {' '.join(argv)} failed")
    level = json.loads(done.stdout)["levels"][0]
    return {
        "direct_ttft_p50_ms": level["direct"]["ttft_p50_ms"],
        "gateway_ttft_p50_ms": level["gateway"]["ttft_p50_ms"],
        "added_ttft_p50_ms": level["ttft_added_p50_ms"],
        "added_ttft_p99_ms": level["ttft_added_p99_ms"],
        "throughput_ratio": level["aggregate_ratio"],
    }


def compose_figures(image: str, model: Path, rounds: str) -> dict[str, Any]:
    port, relay = free_port(), free_port()
    project = ComposeProject(
        ["docker-compose.yml"],
        {
            "MESH_IMAGE": image,
            "MESH_MESH_ID": f"bench-{uuid.uuid4().hex[:6]}",
            "MESH_AUTHORITY_PORT": str(free_port()),
            "MESH_MODEL": f"/models/{model.name}",
            "MESH_MODELS_DIR": str(model.parent),
            "MESH_PORT": str(port),
            "MESH_CONSOLE_PORT": str(free_port()),
            "MESH_RELAY_PORT": str(relay),
            "MESH_ETCD_PORT": str(free_port()),
            "MESH_WORKER_HOST": lan_address(),
            "MESH_THREADS": "1",
            "MESH_PARALLEL": "1",
        },
    )
    name = model.stem
    try:
        log(f"compose up ({project.engine}) …")
        started = time.monotonic()
        project.up()
        wait_until(lambda: chat_once(port, name), 300, "the first answer")
        first_answer_s = time.monotonic() - started
        log(f"first answer after {first_answer_s:.1f} s; measuring TTFT …")
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"]
        instance = models[0]["meshllm"]["replicas"][0]["instance"]
        credentials = Path(tempfile.mkdtemp()) / "node"
        copied = project.container_cmd(
            "cp", f"{project.container('authority')}:/credentials/node", str(credentials)
        )
        if copied.returncode != 0:
            raise SystemExit(f"cannot copy the box's credentials: {copied.stderr.strip()}")
        figures = overhead(
            [
                "--gateway-url",
                f"http://127.0.0.1:{port}",
                "--direct-url",
                f"https://127.0.0.1:{relay}/relay/{instance}",
                "--direct-credentials",
                str(credentials),
                "--concurrency",
                "1",
                "--rounds",
                rounds,
            ]
        )
    finally:
        project.down()
    return {"start_to_first_answer_s": round(first_answer_s, 1), **figures}


def serve_figures(model: Path, rounds: str) -> dict[str, Any]:
    log("mesh-llm serve, the same model, one slot and thread …")
    return overhead(["--model", str(model), "--concurrency", "1", "--rounds", rounds])


def render_markdown(result: dict[str, Any]) -> str:
    build, compose, serve = result["build"], result["compose"], result["serve"]
    lines = [
        f"Image `{build['image']}`: {build['image_bytes'] / 1e6:.0f} MB; "
        f"build with the layer cache warm {build['cached_build_s']:.0f} s. "
        f"Compose start to first answer: {compose['start_to_first_answer_s']:.1f} s.",
        "",
        "| stack | path compared | direct TTFT p50 | gateway TTFT p50 | added p50 | added p99 "
        "| throughput ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, path, row in (
        ("compose", "gateway vs worker relay", compose),
        ("mesh-llm serve", "gateway vs llama-server", serve),
    ):
        lines.append(
            f"| {label} | {path} | {row['direct_ttft_p50_ms']:.1f} ms "
            f"| {row['gateway_ttft_p50_ms']:.1f} ms | {row['added_ttft_p50_ms']:+.1f} ms "
            f"| {row['added_ttft_p99_ms']:+.1f} ms | {row['throughput_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF to serve")
    parser.add_argument("--rounds", default="5", help="rounds per side (gateway_overhead.py)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON (the default)")
    out.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    model = args.model.expanduser().resolve()
    if not model.is_file():
        parser.error(f"no model at {model} (make run fetches the default one)")
    build = build_figures(container_engine())
    result = {
        "build": build,
        "compose": compose_figures(build["image"], model, args.rounds),
        "serve": serve_figures(model, args.rounds),
    }
    print(render_markdown(result) if args.markdown else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
