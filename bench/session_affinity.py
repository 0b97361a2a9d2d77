"""Multi-turn time to first token with session affinity against random routing, over four
llama-server replicas, and what a routing decision costs.

Each conversation opens with a long document of its own (so only the replica that served its
earlier turns holds its prefix in llama-server's prompt cache), then asks `--turns` short
questions, each turn resending the whole conversation as chat clients do. Conversations take
turns round-robin. Each request goes through the gateway's own routing (`gateway.routing`:
the session key from the request, the profile's ranking, in-flight bookkeeping) and then
straight to the chosen replica, streamed, timing the first content chunk. Two profiles: the
default (affinity, queue, free slots) and `random` (the max-score picker alone: every replica
ties, so the choice is random). They alternate round by round, each round with fresh
conversations, so no side finds another's prefixes cached.

Reported: median TTFT of the first turns (cold everywhere) and of the later turns per
profile, the later-turn ratio random/affinity (goal ≥ 2), and the gateway's routing cost per
request (session key + ranking) at 4 and 64 replicas.

    .venv/bin/python bench/session_affinity.py --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import LlamaServer

from meshllm.core.binaries import find_binary
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.gateway.routing import Router, RouteRequest, RoutingSettings, session_key
from meshllm.gateway.routing.profile import PluginSpec, ProfileEntry
from meshllm.registry.catalog import fetch_builtin

ROUTE = "/v1/chat/completions"
WORDS = ("river stone market lantern orchard signal copper meadow harbor ledger violet "
         "engine quarry sparrow thunder canvas pepper glacier tunnel walnut ribbon falcon "
         "cedar anchor velvet comet saddle marble thistle beacon").split()  # fmt: skip
QUESTIONS = ["Summarise the document in one sentence.", "Which word appears most often?",
             "Name three words from the second half.", "What could the title be?"]  # fmt: skip


def profiles() -> dict[str, RoutingSettings]:
    random_only = RoutingSettings(
        plugins=[PluginSpec(type="max-score-picker")],
        profile=[ProfileEntry(plugin_ref="max-score-picker")],
    )
    return {"affinity": RoutingSettings(), "random": random_only}


def document(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def ttft(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, str]:
    started = time.perf_counter()
    first: float | None = None
    text = []
    async with http.post(f"{url}/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                first = first or time.perf_counter()
                text.append(delta)
    return ((first or time.perf_counter()) - started) * 1000, "".join(text)


async def run_round(
    http: aiohttp.ClientSession,
    replicas: list[pb.Endpoint],
    router: Router,
    seed: int,
    args: argparse.Namespace,
) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    conversations = [
        [{"role": "user", "content": f"Read this document.\n\n{document(rng, args.words)}"}]
        for _ in range(args.conversations)
    ]
    samples = []
    for turn in range(args.turns):
        for messages in conversations:
            if turn:
                messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
            body = {"model": "m", "messages": messages, "stream": True, "temperature": 0,
                    "max_tokens": args.max_tokens}  # fmt: skip
            request = RouteRequest("m", session_key(ROUTE, body, {}))
            chosen = router.rank(request, replicas)[0]
            router.started(chosen)
            try:
                ms, answer = await ttft(http, chosen.local_url, body)
            finally:
                router.finished(chosen)
            messages.append({"role": "assistant", "content": answer})
            samples.append((turn, ms))
    return samples


def routing_cost_us(replica_count: int, calls: int = 20000) -> float:
    router = Router(RoutingSettings())
    replicas = [pb.Endpoint(instance_id=f"r{i}", slots=4) for i in range(replica_count)]
    body = {"messages": [{"role": "system", "content": "x" * 2000},
                         {"role": "user", "content": "hello"}]}  # fmt: skip
    started = time.perf_counter()
    for _ in range(calls):
        router.rank(RouteRequest("m", session_key(ROUTE, body, {})), replicas)
    return (time.perf_counter() - started) / calls * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    binary = find_binary("llama-server").path
    cache = Path.home() / ".cache/mesh-llm/models"
    model = Path(args.model) if args.model else fetch_builtin("smollm2-135m-instruct", cache)
    servers = [LlamaServer(binary, model, context=8192, parallel=1, threads=1)
               for _ in range(args.replicas)]  # fmt: skip
    for server in servers:
        await server.start()
    replicas = [pb.Endpoint(instance_id=f"replica-{i}", local_url=s.url, slots=1)
                for i, s in enumerate(servers)]  # fmt: skip
    samples: dict[str, list[tuple[int, float]]] = {name: [] for name in profiles()}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for index in range(args.rounds):
                names = list(profiles())
                if index % 2:
                    names.reverse()
                for offset, name in enumerate(names):
                    router = Router(profiles()[name], random.Random(index))
                    seed = 1000 * index + offset
                    samples[name] += await run_round(http, replicas, router, seed, args)
                    print(f"round {index + 1}: {name} done", file=sys.stderr)
    finally:
        for server in servers:
            await server.process.stop(5)
    result: dict[str, Any] = {"model": model.name, "replicas": args.replicas}
    for name, got in samples.items():
        result[name] = {
            "first_turn_ttft_ms": round(statistics.median(ms for t, ms in got if t == 0), 1),
            "later_turns_ttft_ms": round(statistics.median(ms for t, ms in got if t > 0), 1),
        }
    later = {name: result[name]["later_turns_ttft_ms"] for name in samples}
    result["later_turns_random_over_affinity"] = round(later["random"] / later["affinity"], 2)
    result["routing_us_per_request"] = {n: round(routing_cost_us(n), 1) for n in (4, 64)}
    result["machine"] = f"{os.cpu_count()} cores"
    result["command"] = " ".join(sys.argv)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="a GGUF (default: the built-in SmolLM2)")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--words", type=int, default=600, help="each conversation's document")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    if not args.markdown:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['model']}, {result['replicas']} replicas, {result['machine']}; "
          f"`{result['command']}`\n")  # fmt: skip
    print("| profile | first turn TTFT p50 ms | later turns TTFT p50 ms |\n|---|---|---|")
    for name in profiles():
        r = result[name]
        print(f"| {name} | {r['first_turn_ttft_ms']} | {r['later_turns_ttft_ms']} |")
    print(f"\nLater turns, random / affinity: {result['later_turns_random_over_affinity']}")
    cost = result["routing_us_per_request"]
    print(f"Routing per request: {cost[4]} µs at 4 replicas, {cost[64]} µs at 64")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
