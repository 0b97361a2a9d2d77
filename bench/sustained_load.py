"""Sustained load: many streams kept busy for minutes, straight to llama-server and through the
gateway, side by side in one run; every request ends completed, failed or hung.

It starts `mesh-llm serve` as gateway_overhead.py does (one slot per stream), then alternates
the sides in windows (D G G D D G …) until each side has had `--duration` seconds. In a window,
`--streams` loops each send streamed chat completions one after another; a request that has not
finished `--hang-after` seconds after it was sent is cut and counted as hung. A request is
completed when it streamed all its `--max-tokens` tokens, failed otherwise (an HTTP error, a
reset, a short stream).

    .venv/bin/python bench/sustained_load.py --streams 32 --duration 180 --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import gateway_overhead as overhead

SIDES = overhead.SIDES


@dataclass(frozen=True)
class Load:
    streams: int
    duration_s: float
    window_s: float
    max_tokens: int
    hang_after_s: float
    command: str


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    hung: int = 0
    tokens: int = 0
    busy_s: float = 0.0  # wall time of this side's windows
    errors: tuple[str, ...] = ()

    @property
    def tps(self) -> float:
        return self.tokens / self.busy_s if self.busy_s else 0.0

    def count(self, sample: overhead.Sample | None, max_tokens: int) -> None:
        if sample is None:
            self.hung += 1
            return
        self.tokens += sample.tokens
        if not sample.error and sample.tokens >= max_tokens:
            self.completed += 1
            return
        self.failed += 1
        reason = sample.error or f"stream ended after {sample.tokens} tokens"
        if reason not in self.errors and len(self.errors) < 5:
            self.errors = (*self.errors, reason[:200])


async def one_request(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], hang_after_s: float
) -> overhead.Sample | None:
    try:
        return await asyncio.wait_for(overhead.stream_chat(http, url, body), hang_after_s)
    except TimeoutError:
        return None


async def stream_loop(
    http: aiohttp.ClientSession, url: str, model: str, index: int, until: float, load: Load
) -> list[overhead.Sample | None]:
    results = []
    n = 0
    while time.monotonic() < until:
        body = overhead.nth_body(model, index, n, load.max_tokens)
        results.append(await one_request(http, url, body, load.hang_after_s))
        n += 1
    return results


async def window(
    http: aiohttp.ClientSession, base: str, model: str, seconds: float, load: Load, tally: Tally
) -> None:
    url = f"{base}/v1/chat/completions"
    started = time.monotonic()
    loops = [stream_loop(http, url, model, i, started + seconds, load) for i in range(load.streams)]
    for results in await asyncio.gather(*loops):
        for sample in results:
            tally.count(sample, load.max_tokens)
    tally.busy_s += time.monotonic() - started


async def measure(target: overhead.Target, load: Load) -> dict[str, Tally]:
    tallies = {side: Tally() for side in SIDES}
    urls = {"direct": target.direct, "gateway": target.gateway}
    windows = max(1, round(load.duration_s / load.window_s))
    seconds = load.duration_s / windows
    async with overhead.new_session() as direct, overhead.new_session() as gateway:
        sessions = {"direct": direct, "gateway": gateway}
        for side in SIDES:  # warm-up, not counted
            await window(sessions[side], urls[side], target.model, 5, load, Tally())
        for index in range(windows):
            for side in overhead.round_order(index):
                tally = tallies[side]
                await window(sessions[side], urls[side], target.model, seconds, load, tally)
                overhead.log(
                    f"window {index + 1}/{windows} {side:<7}: {tally.completed} completed, "
                    f"{tally.failed} failed, {tally.hung} hung, {tally.tps:.1f} tok/s so far"
                )
    return tallies


def parse_args(argv: list[str]) -> tuple[overhead.Config, Load, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Sustained streamed load, direct to llama-server vs through the gateway."
    )
    parser.add_argument("--model", type=Path, default=overhead.DEFAULT_MODEL, help="GGUF file")
    parser.add_argument("--streams", type=overhead.positive, default=32, help="parallel streams")
    parser.add_argument(
        "--duration", type=float, default=180.0, help="seconds of load per side (default 180)"
    )
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--max-tokens", type=overhead.positive, default=32, help="per request")
    parser.add_argument(
        "--hang-after", type=float, default=120.0, help="seconds before a request counts as hung"
    )
    parser.add_argument("--threads", type=int, default=1, help="llama-server threads")
    parser.add_argument("--pin", action="store_true", help="as in gateway_overhead.py")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    out.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.window <= 0 or args.hang_after <= 0:
        parser.error("--duration, --window and --hang-after must be positive")
    command = shlex.join(["python", "bench/sustained_load.py", *argv])
    stack = overhead.Config(
        model=args.model.expanduser(),
        concurrency=(args.streams,),
        rounds=1,
        requests_per_stream=1,
        max_tokens=args.max_tokens,
        threads=args.threads,
        pin=args.pin,
        gateway_url="",
        direct_url="",
        direct_credentials="",
        as_json=args.json,
        markdown=args.markdown,
        command=command,
    )
    load = Load(args.streams, args.duration, args.window, args.max_tokens, args.hang_after, command)
    return stack, load, args


async def run(config: overhead.Config, load: Load) -> dict[str, Any]:
    stack = overhead.ServeStack(config)
    try:
        target = await stack.start()
        if config.pin:
            overhead.log(overhead.pin_processes(stack.pid))
        tallies = await measure(target, load)
    finally:
        await stack.stop()
    sides = {side: {**asdict(t), "tokens_per_s": round(t.tps, 2)} for side, t in tallies.items()}
    direct, gateway = tallies["direct"].tps, tallies["gateway"].tps
    return {
        "command": load.command,
        "model": target.model,
        "streams": load.streams,
        "seconds_per_side": {side: round(t.busy_s, 1) for side, t in tallies.items()},
        "max_tokens": load.max_tokens,
        "sides": sides,
        "throughput_ratio": round(gateway / direct, 3) if direct else None,
    }


def render_markdown(result: dict[str, Any]) -> str:
    head = ["side", "seconds", "completed", "failed", "hung", "tok/s"]
    rows = [
        [
            side,
            str(result["seconds_per_side"][side]),
            str(s["completed"]),
            str(s["failed"]),
            str(s["hung"]),
            f"{s['tokens_per_s']:.1f}",
        ]
        for side, s in result["sides"].items()
    ]
    return "\n\n".join(
        [
            f"```\n{result['command']}\n```",
            f"{result['streams']} streams, {result['max_tokens']} tokens per request, "
            f"model {result['model']}; gateway/direct throughput ratio "
            f"**{result['throughput_ratio']}**.",
            overhead.markdown_table(head, rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    config, load, args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = asyncio.run(run(config, load))
    except overhead.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render_markdown(result))
    bad = sum(s["failed"] + s["hung"] for s in result["sides"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
