"""How much store traffic demand recording costs: a real stack (`mesh-llm serve --gguf MODEL`)
serving a small model, `--streams` concurrent streaming chats through its gateway for
`--seconds`, and the demand records the gateway wrote meanwhile (its
meshllm_demand_writes_total counter, read from /metrics before and after).

    .venv/bin/python bench/demand_writes.py [--streams 32] [--seconds 30] [--markdown]

The model defaults to the generated tiny test model (tests' ModelShape()).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import local_serve

from meshllm.cli.make_model import ModelShape, cached_model

COUNTER = re.compile(rb"^meshllm_demand_writes_total ([0-9.e+]+)$", re.M)


async def writes(http: aiohttp.ClientSession, api: str) -> float:
    async with http.get(api.removesuffix("/v1") + "/metrics") as reply:
        found = COUNTER.search(await reply.read())
    return float(found.group(1)) if found else 0.0


async def stream(http: aiohttp.ClientSession, api: str, model: str, until: float) -> int:
    done = 0
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16,
        "stream": True,
    }
    while time.monotonic() < until:
        async with http.post(f"{api}/chat/completions", json=body) as reply:
            async for _ in reply.content:
                pass
            done += reply.status == 200
    return done


async def measure(api: str, model: str, streams: int, seconds: float) -> dict[str, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        before = await writes(http, api)
        started = time.monotonic()
        until = started + seconds
        done = await asyncio.gather(*(stream(http, api, model, until) for _ in range(streams)))
        elapsed = time.monotonic() - started
        after = await writes(http, api)
    return {
        "requests": sum(done),
        "seconds": elapsed,
        "requests_per_s": sum(done) / elapsed,
        "writes": after - before,
        "writes_per_s": (after - before) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    model = args.model or cached_model(ModelShape())
    with tempfile.TemporaryDirectory() as state:
        node = local_serve(Path(state), model, parallel=8, context=2048, console=False)
        try:
            node.wait_event("model_ready", timeout=300)
            r = asyncio.run(measure(node.api, model.stem, args.streams, args.seconds))
        finally:
            node.stop()
    if args.markdown:
        print("| streams | requests | requests/s | demand writes | writes/s |")
        print("|---|---|---|---|---|")
        print(
            f"| {args.streams} | {r['requests']:.0f} in {r['seconds']:.0f} s | "
            f"{r['requests_per_s']:.1f} | {r['writes']:.0f} | {r['writes_per_s']:.2f} |"
        )
    else:
        for k, v in r.items():
            print(f"{k:>15}: {v:.2f}")


if __name__ == "__main__":
    main()
