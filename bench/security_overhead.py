"""What the mesh's security costs per request, measured side by side in one run:

1. **mTLS on the relay path**: the worker relay in front of one llama-server, served twice —
   plain HTTP on loopback and mutual TLS with the mesh's certificates — and reached the way a
   gateway reaches it (a pooled keep-alive session; for TLS, with the node's certificate).
   Streamed chat completions alternate between the two (A B B A …); the figure is the time to
   first token added by TLS, p50 and p99.
2. **API-key checks**: the gateway's guard (`ApiGuard`) with keys configured against none,
   called in-process on the same request many times: microseconds added per request.

    .venv/bin/python bench/security_overhead.py --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gateway_overhead as overhead
from helpers import LlamaServer, eventually, issue_credentials

from meshllm.core import pki
from meshllm.core.binaries import find_binary
from meshllm.core.lifecycle import EmbeddedUvicorn
from meshllm.core.ports import free_port
from meshllm.core.streaming import relay_session, upstream_session
from meshllm.gateway.guard import ApiGuard, ApiPolicy
from meshllm.worker.relay import RelayApp

SIDES = ("plain", "mtls")


async def serve_relay(
    llama: LlamaServer, credentials: pki.Credentials | None, mesh: str, session: Any
) -> tuple[EmbeddedUvicorn, asyncio.Task[None], str]:
    app = RelayApp(
        {"i": llama.port}.get,
        lambda: session,
        mesh_id=mesh,
        revoked=frozenset(),
        tls=credentials is not None,
    )
    port = free_port()
    server = EmbeddedUvicorn(app, "127.0.0.1", port, tls=credentials)
    task = asyncio.create_task(server.run())
    await eventually(lambda: server.started)
    scheme = "https" if credentials else "http"
    return server, task, f"{scheme}://127.0.0.1:{port}/relay/i/v1/chat/completions"


async def relay_figures(model: Path, rounds: int, requests: int, max_tokens: int) -> dict:
    mesh = "m-bench"
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-tls-"))
    ca = pki.create_ca(mesh)
    worker = issue_credentials(home / "worker", ca, "worker")
    gateway = issue_credentials(home / "gateway", ca, "gateway")
    llama = LlamaServer(
        find_binary("llama-server").path, model, context=2048, parallel=1, threads=1
    )
    await llama.start()
    upstream = upstream_session()
    plain = await serve_relay(llama, None, mesh, upstream)
    secured = await serve_relay(llama, worker, mesh, upstream)
    urls = {"plain": plain[2], "mtls": secured[2]}
    sessions = {
        "plain": relay_session(None),
        "mtls": relay_session(gateway.client_context(check_name=False)),
    }
    ttft: dict[str, list[float]] = {side: [] for side in SIDES}
    errors: dict[str, int] = {side: 0 for side in SIDES}
    body = overhead.request_body(model.stem, overhead.PROMPTS[0], max_tokens)
    try:
        for side in SIDES:  # warm-up: a connection in each pool
            await overhead.stream_chat(sessions[side], urls[side], body)
        for index in range(rounds):
            for side in overhead.round_order(index):
                mapped = {"direct": "plain", "gateway": "mtls"}[side]
                for _ in range(requests):
                    sample = await overhead.stream_chat(sessions[mapped], urls[mapped], body)
                    if sample.ttft_s is None:
                        errors[mapped] += 1
                    else:
                        ttft[mapped].append(sample.ttft_s * 1000)
    finally:
        for session in sessions.values():
            await session.close()
        for server, task, _ in (plain, secured):
            await server.stop()
            await task
        await upstream.close()
        await llama.process.stop(5)
    stats = {
        side: {
            "ttft_p50_ms": overhead.percentile(ttft[side], 50),
            "ttft_p99_ms": overhead.percentile(ttft[side], 99),
            "requests": len(ttft[side]),
            "errors": errors[side],
        }
        for side in SIDES
    }
    return {
        **stats,
        "added_p50_ms": stats["mtls"]["ttft_p50_ms"] - stats["plain"]["ttft_p50_ms"],
        "added_p99_ms": stats["mtls"]["ttft_p99_ms"] - stats["plain"]["ttft_p99_ms"],
    }


async def guard_figures(calls: int) -> dict:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        return None

    keys = [f"sk-{i:04d}-{'x' * 40}" for i in range(4)]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [
            (b"host", b"localhost:9337"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {keys[-1]}".encode()),
        ],
    }
    figures = {
        label: await _best_us(ApiGuard(app, policy), scope, receive, send, calls)
        for label, policy in (("no keys", ApiPolicy.create()), ("4 keys", ApiPolicy.create(keys)))
    }
    base = await _best_us(app, scope, receive, send, calls)
    return {
        "bare_app_us": base,
        "guard_no_keys_us": figures["no keys"] - base,
        "guard_4_keys_us": figures["4 keys"] - base,
    }


async def _best_us(app: Any, scope: dict, receive: Any, send: Any, calls: int) -> float:
    """Microseconds per call of `app`, the best of 5 runs."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            await app(scope, receive, send)
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def render_markdown(result: dict) -> str:
    relay, guard = result["relay"], result["guard"]
    fmt = lambda v: f"{v:.2f}"  # noqa: E731
    return "\n".join(
        [
            f"```\n{result['command']}\n```",
            "",
            "| relay | requests | TTFT p50 ms | TTFT p99 ms |",
            "|---|---:|---:|---:|",
            *(
                f"| {side} | {relay[side]['requests']} | {fmt(relay[side]['ttft_p50_ms'])} | "
                f"{fmt(relay[side]['ttft_p99_ms'])} |"
                for side in SIDES
            ),
            "",
            f"mTLS adds **{fmt(relay['added_p50_ms'])} ms** p50 and {fmt(relay['added_p99_ms'])} ms"
            " p99 to the time to first token through a pooled relay session.",
            "",
            f"API-key check: {guard['guard_4_keys_us']:.1f} µs per request with 4 keys "
            f"({guard['guard_no_keys_us']:.1f} µs for the guard without keys; best of 5 runs "
            f"of {result['guard_calls']} calls).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=overhead.DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=20, help="per side per round")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--guard-calls", type=int, default=20000)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--markdown", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    relay = asyncio.run(relay_figures(args.model, args.rounds, args.requests, args.max_tokens))
    guard = asyncio.run(guard_figures(args.guard_calls))
    result = {
        "command": shlex.join(["python", "bench/security_overhead.py", *(argv or sys.argv[1:])]),
        "relay": relay,
        "guard": guard,
        "guard_calls": args.guard_calls,
    }
    print(json.dumps(result, indent=2) if args.json else render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
