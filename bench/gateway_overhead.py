"""What the gateway costs: the same model and prompts streamed straight to llama-server and
through the gateway, at several concurrency levels.

By default it starts its own stack (`mesh-llm serve --gguf MODEL --parallel N --json`, N = the
highest concurrency, so llama-server has a slot per stream), finds the instance's loopback
llama-server port in the console API, and stops the stack with SIGINT when done. Pass
--gateway-url and --direct-url to measure a stack that is already running instead.

Each concurrency level gets a warm-up round per side, then `--rounds` rounds per side, the
sides alternating with the first side swapped every round (D G G D D G …) so that drift in the
machine's speed falls on both alike. A round is `concurrency` parallel streams, each sending
`--requests-per-stream` requests one after another. Both sides use one aiohttp session each,
configured the same, and identical request bodies (temperature 0, ignore_eos, so every request
generates exactly --max-tokens tokens).

Reported per level and side: aggregate throughput (content tokens / round wall time, median
over rounds), per-stream decode rate ((tokens - 1) / (last - first content chunk), median over
requests), and time to first content chunk (p50, p99); then gateway/direct ratios and the TTFT
the gateway adds (difference of the p50s and of the p99s).

    .venv/bin/python bench/gateway_overhead.py --concurrency 1,8,32 --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from meshllm.core.pki import Credentials

DEFAULT_MODEL = Path.home() / ".cache" / "mesh-llm" / "models" / "smollm2-135m-instruct.gguf"
PROMPTS = (
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about a lighthouse keeper.",
    "List three uses for a paperclip besides holding paper.",
    "Describe how a bicycle gear system works.",
    "Give a recipe idea that uses rice, eggs and spinach.",
    "What are the main differences between a lake and a pond?",
    "Summarize the plot of a story about a lost robot finding home.",
    "Suggest a name for a bakery and explain the choice.",
)
PROMPT_BUDGET = 128  # tokens a prompt may take in a slot, chat template included
SLOT_MARGIN = 64
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
SIDES = ("direct", "gateway")


class BenchError(Exception):
    """Printed as one line; the run exits non-zero."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Config:
    model: Path
    concurrency: tuple[int, ...]
    rounds: int
    requests_per_stream: int
    max_tokens: int
    threads: int
    pin: bool
    gateway_url: str
    direct_url: str
    direct_credentials: str  # a node's credentials directory, for a relay as the direct side
    as_json: bool
    markdown: bool
    command: str

    @property
    def slots(self) -> int:
        return max(self.concurrency)

    @property
    def context(self) -> int:
        per_slot = PROMPT_BUDGET + self.max_tokens + SLOT_MARGIN
        per_slot = -(-per_slot // 64) * 64
        return self.slots * per_slot


def parse_levels(value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {value!r}") from exc
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive integers")
    return levels


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Gateway overhead: streamed chat completions direct to llama-server "
        "vs through the mesh-llm gateway."
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file to serve")
    parser.add_argument(
        "--concurrency",
        type=parse_levels,
        default=(1, 8, 32),
        help="comma-separated numbers of parallel streams (default 1,8,32)",
    )
    parser.add_argument(
        "--rounds", type=positive, default=5, help="measured rounds per side (default 5)"
    )
    parser.add_argument(
        "--requests-per-stream", type=positive, default=4, help="sequential requests per round"
    )
    parser.add_argument("--max-tokens", type=positive, default=64, help="tokens per request")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama-server threads (default 1: on a 2-core machine the other core is left to "
        "the gateway and the load generator, so they do not slow the model they measure)",
    )
    parser.add_argument("--gateway-url", default="", help="an already running gateway")
    parser.add_argument("--direct-url", default="", help="its llama-server, e.g. :41000")
    parser.add_argument(
        "--direct-credentials",
        default="",
        metavar="DIR",
        help="present this node's certificate on the direct side: for a --direct-url that is "
        "a worker relay (https://host:relay-port/relay/INSTANCE), as in a compose stack",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin llama-server to CPU 0 and the gateway, the other services and the load "
        "generator to the remaining CPUs (a fair split on a small machine)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    out.add_argument("--markdown", action="store_true", help="print markdown tables")
    return parser


def parse_args(argv: list[str]) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.gateway_url) != bool(args.direct_url):
        parser.error("--gateway-url and --direct-url go together")
    if args.max_tokens < 2:
        parser.error("--max-tokens must be at least 2 to measure a decode rate")
    return Config(
        model=args.model.expanduser(),
        concurrency=args.concurrency,
        rounds=args.rounds,
        requests_per_stream=args.requests_per_stream,
        max_tokens=args.max_tokens,
        threads=args.threads,
        pin=args.pin,
        gateway_url=base_url(args.gateway_url),
        direct_url=base_url(args.direct_url),
        direct_credentials=args.direct_credentials,
        as_json=args.json,
        markdown=args.markdown,
        command=shlex.join(["python", "bench/gateway_overhead.py", *argv]),
    )


def base_url(value: str) -> str:
    """`http://host:port` from forms like `:9337`, `host:9337/v1/`."""
    if not value:
        return ""
    url = value.rstrip("/")
    url = url.removesuffix("/v1")
    if url.startswith(":"):
        url = "127.0.0.1" + url
    if "://" not in url:
        url = "http://" + url
    return url


# ---------------------------------------------------------------------------------------------
# The stack under test


@dataclass(frozen=True)
class Target:
    gateway: str
    direct: str
    model: str


class ServeStack:
    """`mesh-llm serve` through the tests' harness (tests/harness.py), stopped with SIGINT."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = Path(tempfile.mkdtemp(prefix="mesh-llm-bench-"))
        self.serve: Any = None  # harness.ServeProcess

    @property
    def pid(self) -> int:
        assert self.serve is not None
        return self.serve.pid

    async def start(self) -> Target:
        if not self.config.model.is_file():
            raise BenchError(f"no model file at {self.config.model} (pass --model PATH)")
        from harness import local_serve  # the test harness: only where a stack is started

        self.serve = serve = local_serve(
            self.state_dir,
            self.config.model,
            threads=self.config.threads,
            parallel=self.config.slots,
            context=self.config.context,
        )
        log(f"starting: {shlex.join(serve.argv)}")
        try:
            ready = await asyncio.to_thread(serve.wait_event, "model_ready", 1, STARTUP_TIMEOUT_S)
            model = str(ready["model"])
            log(f"model {model} is ready")
            port = await asyncio.to_thread(serve.llama_port, model)
        except AssertionError as exc:
            raise BenchError(
                f"the stack did not come up: {self._why()} (logs: {self.state_dir})"
            ) from exc
        return Target(serve.api.removesuffix("/v1"), f"http://127.0.0.1:{port}", model)

    def _why(self) -> str:
        assert self.serve is not None
        said = [e for e in self.serve.events if "output" in e or e.get("event") == "error"]
        return str(said[-1]) if said else "no output"

    async def stop(self) -> None:
        if self.serve is None:
            return
        log("stopping the stack (SIGINT)")
        code = await asyncio.to_thread(self.serve.stop, STOP_TIMEOUT_S, signal.SIGINT)
        log(f"stack stopped (exit {code}); logs in {self.state_dir}")


def ready_instance_port(status: dict[str, Any], model: str) -> int | None:
    for worker in status.get("workers", []):
        for instance in worker.get("instances", []):
            ready = instance.get("state") == "INSTANCE_STATE_READY"
            if ready and instance.get("model") == model and instance.get("port"):
                return int(instance["port"])
    return None


async def first_model(gateway: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway}/v1/models") as reply:
        data = (await reply.json()).get("data") or []
    if not data:
        raise BenchError(f"{gateway}/v1/models lists no model")
    return str(data[0]["id"])


async def slot_count(direct: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{direct}/props") as reply:
            return int((await reply.json())["total_slots"])
    except (aiohttp.ClientError, KeyError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Requests and rounds


@dataclass
class Sample:
    tokens: int = 0
    ttft_s: float | None = None
    decode_tps: float | None = None
    usage_tokens: int | None = None
    error: str = ""


@dataclass
class Round:
    side: str
    wall_s: float
    samples: list[Sample]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    @property
    def tps(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if s.error)


def new_session(credentials: str = "") -> aiohttp.ClientSession:
    """llama-server closes the connection after a streamed response, so neither side reuses
    connections: both pay one TCP connect per request (and, with a node's `credentials`
    toward a relay, one TLS handshake)."""
    tls = Credentials(Path(credentials)).client_context(check_name=False) if credentials else None
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0, ssl=tls or True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
    )


def request_body(model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": max_tokens,
        "ignore_eos": True,
    }


def sse_events(line: bytes) -> Iterator[dict[str, Any]]:
    text = line.strip()
    if not text.startswith(b"data:") or text == b"data: [DONE]":
        return
    with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
        event = json.loads(text[5:])
        if isinstance(event, dict):
            yield event


def has_content(event: dict[str, Any]) -> bool:
    choices = event.get("choices") or []
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


async def stream_chat(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Sample:
    sample = Sample()
    first = last = 0.0
    started = time.perf_counter()
    try:
        async with http.post(url, json=body) as reply:
            if reply.status != 200:
                sample.error = f"HTTP {reply.status}: {(await reply.text())[:200]}"
                return sample
            async for line in reply.content:
                for event in sse_events(line):
                    if has_content(event):
                        last = time.perf_counter()
                        first = first or last
                        sample.tokens += 1
                    if event.get("usage"):
                        sample.usage_tokens = int(event["usage"].get("completion_tokens", 0))
    except (aiohttp.ClientError, TimeoutError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    if sample.tokens:
        sample.ttft_s = first - started
    if sample.tokens > 1 and last > first:
        sample.decode_tps = (sample.tokens - 1) / (last - first)
    return sample


def nth_body(model: str, stream: int, n: int, max_tokens: int) -> dict[str, Any]:
    """The n-th request of a stream: prompts rotate, each stream starting at its own."""
    return request_body(model, PROMPTS[(stream + n) % len(PROMPTS)], max_tokens)


async def stream_worker(
    http: aiohttp.ClientSession, url: str, model: str, index: int, config: Config
) -> list[Sample]:
    samples = []
    for n in range(config.requests_per_stream):
        body = nth_body(model, index, n, config.max_tokens)
        samples.append(await stream_chat(http, url, body))
    return samples


async def run_round(
    http: aiohttp.ClientSession, base: str, side: str, model: str, level: int, config: Config
) -> Round:
    url = f"{base}/v1/chat/completions"
    started = time.perf_counter()
    per_stream = await asyncio.gather(
        *(stream_worker(http, url, model, i, config) for i in range(level))
    )
    wall = time.perf_counter() - started
    return Round(side, wall, [s for samples in per_stream for s in samples])


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


@dataclass
class SideStats:
    requests: int
    errors: int
    short: int
    aggregate_tps: float | None
    stream_tps_p50: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    round_tps: list[float]


def side_stats(rounds: list[Round], max_tokens: int) -> SideStats:
    samples = [s for r in rounds for s in r.samples]
    ttfts = [s.ttft_s * 1000 for s in samples if s.ttft_s is not None and not s.error]
    rates = [s.decode_tps for s in samples if s.decode_tps is not None and not s.error]
    return SideStats(
        requests=len(samples),
        errors=sum(1 for s in samples if s.error),
        short=sum(1 for s in samples if not s.error and s.tokens < max_tokens),
        aggregate_tps=median([r.tps for r in rounds]),
        stream_tps_p50=median(rates),
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p99_ms=percentile(ttfts, 99),
        round_tps=[round(r.tps, 2) for r in rounds],
    )


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


@dataclass
class LevelResult:
    concurrency: int
    direct: SideStats
    gateway: SideStats
    aggregate_ratio: float | None = field(init=False)
    stream_ratio: float | None = field(init=False)
    ttft_added_p50_ms: float | None = field(init=False)
    ttft_added_p99_ms: float | None = field(init=False)

    def __post_init__(self) -> None:
        d, g = self.direct, self.gateway
        self.aggregate_ratio = ratio(g.aggregate_tps, d.aggregate_tps)
        self.stream_ratio = ratio(g.stream_tps_p50, d.stream_tps_p50)
        self.ttft_added_p50_ms = diff(g.ttft_p50_ms, d.ttft_p50_ms)
        self.ttft_added_p99_ms = diff(g.ttft_p99_ms, d.ttft_p99_ms)


# ---------------------------------------------------------------------------------------------
# The benchmark


def round_order(index: int) -> tuple[str, str]:
    return SIDES if index % 2 == 0 else (SIDES[1], SIDES[0])


def describe(rnd: Round, level: int, label: str) -> str:
    ttfts = [s.ttft_s * 1000 for s in rnd.samples if s.ttft_s is not None]
    p50 = percentile(ttfts, 50)
    ttft = f"{p50:.0f} ms" if p50 is not None else "n/a"
    return (
        f"[c={level}] {label} {rnd.side:<7}: {rnd.tps:7.1f} tok/s, TTFT p50 {ttft}, "
        f"{rnd.wall_s:.1f} s, {rnd.errors} errors"
    )


def report_errors(rnd: Round) -> None:
    for message in sorted({s.error for s in rnd.samples if s.error})[:3]:
        log(f"    {rnd.side} error: {message}")


async def run_level(
    sessions: dict[str, aiohttp.ClientSession], target: Target, level: int, config: Config
) -> LevelResult:
    urls = {"direct": target.direct, "gateway": target.gateway}
    for side in SIDES:
        warm = await run_round(sessions[side], urls[side], side, target.model, level, config)
        log(describe(warm, level, "warm-up  "))
        report_errors(warm)
        check_usage(warm, config.max_tokens)
    rounds: dict[str, list[Round]] = {side: [] for side in SIDES}
    for index in range(config.rounds):
        for side in round_order(index):
            rnd = await run_round(sessions[side], urls[side], side, target.model, level, config)
            log(describe(rnd, level, f"round {index + 1}/{config.rounds}"))
            report_errors(rnd)
            rounds[side].append(rnd)
    stats = {side: side_stats(rounds[side], config.max_tokens) for side in SIDES}
    return LevelResult(level, stats["direct"], stats["gateway"])


def check_usage(rnd: Round, max_tokens: int) -> None:
    counts = {s.usage_tokens for s in rnd.samples if s.usage_tokens is not None}
    if counts and counts != {max_tokens}:
        log(f"    warning: {rnd.side} usage.completion_tokens {sorted(counts)} != {max_tokens}")
    short = sum(1 for s in rnd.samples if not s.error and s.tokens < max_tokens)
    if short:
        log(f"    warning: {short} {rnd.side} requests streamed fewer than {max_tokens} tokens")


async def measure(target: Target, config: Config) -> list[LevelResult]:
    results = []
    async with new_session(config.direct_credentials) as direct, new_session() as gateway:
        sessions = {"direct": direct, "gateway": gateway}
        for level in config.concurrency:
            results.append(await run_level(sessions, target, level, config))
    return results


async def run(config: Config) -> dict[str, Any]:
    if config.gateway_url:
        try:
            model = await first_model(config.gateway_url)
        except (aiohttp.ClientError, ValueError) as exc:
            raise BenchError(f"cannot list models at {config.gateway_url}: {exc}") from exc
        return await benchmark(Target(config.gateway_url, config.direct_url, model), config, True)
    stack = ServeStack(config)
    try:
        target = await stack.start()
        if config.pin:
            log(pin_processes(stack.pid))
        return await benchmark(target, config, False)
    finally:
        await stack.stop()


def pin_processes(root: int) -> str:
    """llama-server alone on CPU 0; every other process of the stack and this load generator
    on the others, so the hops being measured never wait for the model's cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "--pin: only one CPU, nothing pinned"
    model_cpu, rest = {cpus[0]}, set(cpus[1:])
    pinned = 0
    from helpers import descendants

    stack = {root: "mesh-llm serve", **descendants(root)}
    for pid, command in stack.items():
        is_model = "llama-server" in command
        for task in os.listdir(f"/proc/{pid}/task"):  # every thread
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), model_cpu if is_model else rest)
        pinned += 1
    os.sched_setaffinity(0, rest)
    return f"pinned {pinned} processes: llama-server on CPU {cpus[0]}, the rest on {sorted(rest)}"


async def benchmark(target: Target, config: Config, external: bool) -> dict[str, Any]:
    log(f"direct: {target.direct}  gateway: {target.gateway}  model: {target.model}")
    slots = await slot_count(target.direct)
    if slots is not None and slots < config.slots:
        log(f"warning: llama-server has {slots} slots; requests beyond that will queue")
    levels = await measure(target, config)
    return summary(config, target, levels, slots, external)


def summary(
    config: Config, target: Target, levels: list[LevelResult], slots: int | None, external: bool
) -> dict[str, Any]:
    return {
        "command": config.command,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "stack": "external" if external else "mesh-llm serve (started by the benchmark)",
        "model": target.model,
        "model_file": None if external else str(config.model),
        "slots": slots,  # llama-server's total_slots, when it reports them
        "context": None if external else config.context,
        "max_tokens": config.max_tokens,
        "rounds": config.rounds,
        "requests_per_stream": config.requests_per_stream,
        "levels": [asdict(level) for level in levels],
    }


# ---------------------------------------------------------------------------------------------
# Output


def fmt(value: float | None, spec: str = ".1f", sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return format(value, ("+" if sign else "") + spec)


def throughput_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for level in result["levels"]:
        d, g = level["direct"], level["gateway"]
        rows.append(
            [
                str(level["concurrency"]),
                fmt(d["aggregate_tps"]),
                fmt(g["aggregate_tps"]),
                fmt(level["aggregate_ratio"], ".3f"),
                fmt(d["stream_tps_p50"]),
                fmt(g["stream_tps_p50"]),
                fmt(level["stream_ratio"], ".3f"),
                f"{d['errors'] + d['short']}/{g['errors'] + g['short']}",
            ]
        )
    return rows


def ttft_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for level in result["levels"]:
        d, g = level["direct"], level["gateway"]
        rows.append(
            [
                str(level["concurrency"]),
                str(g["requests"]),
                fmt(d["ttft_p50_ms"]),
                fmt(g["ttft_p50_ms"]),
                fmt(level["ttft_added_p50_ms"], sign=True),
                fmt(d["ttft_p99_ms"]),
                fmt(g["ttft_p99_ms"]),
                fmt(level["ttft_added_p99_ms"], sign=True),
            ]
        )
    return rows


THROUGHPUT_HEAD = [
    "streams",
    "direct tok/s",
    "gateway tok/s",
    "ratio",
    "direct stream tok/s",
    "gateway stream tok/s",
    "ratio",
    "bad (d/g)",
]
TTFT_HEAD = [
    "streams",
    "requests/side",
    "direct p50 ms",
    "gateway p50 ms",
    "added p50 ms",
    "direct p99 ms",
    "gateway p99 ms",
    "added p99 ms",
]


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plain_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows]
    )


def setup_line(result: dict[str, Any]) -> str:
    machine = result["machine"]
    slots = f", {result['slots']} llama-server slots" if result["slots"] else ""
    if result["context"]:
        slots += f", context {result['context']}"
    return (
        f"model {result['model']}{slots}; {result['max_tokens']} tokens per request "
        f"(ignore_eos, temperature 0); {result['rounds']} rounds per side, "
        f"{result['requests_per_stream']} requests per stream per round; "
        f"{machine['cpus']} CPUs, {machine['platform']}"
    )


def render_markdown(result: dict[str, Any]) -> str:
    return "\n\n".join(
        [
            f"```\n{result['command']}\n```",
            setup_line(result) + ".",
            "Decode throughput: aggregate = content tokens / round wall time (median of rounds); "
            "stream = (tokens - 1) / (last - first token time) per request (median).",
            markdown_table(THROUGHPUT_HEAD, throughput_rows(result)),
            "Time to first token (first streamed content chunk), and what the gateway adds:",
            markdown_table(TTFT_HEAD, ttft_rows(result)),
        ]
    )


def render_plain(result: dict[str, Any]) -> str:
    return "\n\n".join(
        [
            setup_line(result),
            plain_table(THROUGHPUT_HEAD, throughput_rows(result)),
            plain_table(TTFT_HEAD, ttft_rows(result)),
        ]
    )


def render(result: dict[str, Any], config: Config) -> str:
    if config.as_json:
        return json.dumps(result, indent=2)
    if config.markdown:
        return render_markdown(result)
    return render_plain(result)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = asyncio.run(run(config))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(render(result, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
