"""A pipeline split against the same model solo, through the mesh's own launch code.

Three stacks run side by side on this machine:

- `solo`: one llama-server holding the whole model (`worker.llama_server.build_argv`);
- `split`: a host llama-server (`build_argv` with a `SplitLayout`: `--rpc`, `--tensor-split`
  with the host last, `--flash-attn off`) driving an rpc-server (`RpcServerLauncher`, its
  tensor cache on) through the workers' RPC tunnel (`TunnelClient` → `TunnelServer`, mutual
  TLS with node certificates of a throwaway mesh, each end in its own process as on real
  nodes: bench/tunnel_ends.py);
- `split-tcp`: the same split with `--rpc` straight at its own rpc-server's port: the
  difference to `split` is what the tunnel costs.

Reported: load time of each stack (the split's twice: with the rpc-server's cache empty, then
filled by the first load, and the bytes the host sent the peer each time); then, per
concurrency level, decode throughput, per-stream decode rate and time to first token per side
(the sides' rounds alternate, first side rotating, as in gateway_overhead.py), the ratios to
solo, and the RPC round trips per generated token counted in the tunnel.

On a GPU machine every process uses GPU 0 (`--gpu`); on a CPU each llama-server and the
rpc-server get `--threads` threads.

    .venv/bin/python bench/pipeline_split.py --shape cpu --concurrency 1,4 --markdown
    python3 bench/pipeline_split.py --gpu --shape 8b --quantize Q4_K_M --concurrency 1,8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import gateway_overhead as overhead
from tunnel_ends import TunnelEnds

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import pki
from meshllm.core.binaries import find_binary, find_companion
from meshllm.core.ports import free_port
from meshllm.core.process import ChildProcess
from meshllm.registry.gguf_facts import read_facts
from meshllm.worker.launchers import RpcServerLauncher, port_accepts
from meshllm.worker.llama_server import (
    InstanceSpec,
    SplitLayout,
    build_argv,
    flash_attn_over_rpc,
    health,
)

SHAPES = {
    # a few hundred MB of f32 weights: tensors over the 10 MiB hash threshold, quick on 2 cores
    "cpu": ModelShape(layers=8, embedding=1024, feed_forward=4096, heads=8, kv_heads=4,
                      name="bench-split-cpu", seed=7),
    "8b": ModelShape(layers=32, embedding=4096, feed_forward=14336, heads=32, kv_heads=8,
                     context=8192, dtype="f16", name="bench-llama-8b", seed=8),
    "32b": ModelShape(layers=64, embedding=5120, feed_forward=27648, heads=40, kv_heads=8,
                      context=8192, dtype="f16", name="bench-llama-32b", seed=32),
}  # fmt: skip
SIDES = ("solo", "split", "split-tcp")
MESH = "m-bench-split"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Stack:
    name: str
    host: ChildProcess
    port: int
    load_s: float
    tunnel: TunnelEnds | None = None


async def wait_healthy(http: aiohttp.ClientSession, process: ChildProcess, port: int) -> None:
    while await health(http, port, 5.0) != 200:
        if not process.running:
            raise RuntimeError(f"{process.name} exited: {process.last_output(8)}")
        await asyncio.sleep(0.1)


class Bench:
    def __init__(self, args: argparse.Namespace, model: Path, work: Path) -> None:
        self.args = args
        self.model = model
        self.work = work
        llama = find_binary("llama-server")
        rpc = find_companion("ggml-rpc-server", llama.path)
        if rpc is None:
            raise SystemExit("no ggml-rpc-server beside llama-server: run `make llama`")
        self.llama_bin, self.rpc_bin = llama.path, rpc.path
        self.env = dict(os.environ, LLAMA_CACHE=str(work / "cache"))
        if args.gpu:
            self.env["CUDA_VISIBLE_DEVICES"] = "0"
        self.processes: list[ChildProcess] = []
        self.tunnels: list[TunnelEnds] = []
        self.http = aiohttp.ClientSession()
        ca = pki.create_ca(MESH)
        self.host_creds = self._credentials(ca, "host")
        self.peer_creds = self._credentials(ca, "peer")

    def _credentials(self, ca: Any, node: str) -> pki.Credentials:
        key = pki.new_key()
        cert = pki.issue(ca[0], ca[1], key.public_key(), node=node, role=pki.NODE)
        creds = pki.Credentials(self.work / node)
        creds.save(ca[1], cert, key)
        return creds

    def spec(self, name: str, split: SplitLayout | None = None) -> InstanceSpec:
        return InstanceSpec(
            instance_id=name,
            model=self.model.stem,
            model_path=str(self.model),
            context=self.args.context,
            parallel=max(self.args.concurrency),
            threads=self.args.threads,
            gpu_layers=999 if self.args.gpu else 0,
            prompt_cache_mib=self.args.prompt_cache_mib,
            split=split,
        )

    async def start(self, name: str, argv: list[str]) -> ChildProcess:
        process = ChildProcess(
            name,
            argv,
            env=self.env,
            log_path=self.work / f"{name}.log",
            ignore_sigpipe=name.startswith("rpc"),
        )
        await process.start()
        self.processes.append(process)
        return process

    async def rpc_server(self, name: str) -> int:
        port = free_port()
        spec = InstanceSpec(name, self.model.stem, "", 0, threads=self.args.threads)
        process = await self.start(name, RpcServerLauncher().argv(self.rpc_bin, spec, port))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if await port_accepts(port, 1.0):
                return port
            if not process.running:
                raise RuntimeError(f"{name} exited: {process.last_output(8)}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{name} never listened")

    async def host(self, name: str, spec: InstanceSpec) -> Stack:
        port = free_port()
        started = time.perf_counter()
        argv = build_argv(self.llama_bin, spec, port)
        if self.args.flash_attn != "mesh":  # the last --flash-attn wins
            argv += ["--flash-attn", self.args.flash_attn]
        process = await self.start(name, argv)
        await wait_healthy(self.http, process, port)
        return Stack(name, process, port, time.perf_counter() - started)

    def layout(self, endpoint: str) -> SplitLayout:
        facts = read_facts(self.model)
        return SplitLayout(
            (endpoint,), (0.5,), 0.5, facts.block_count, host_is_cpu=not self.args.gpu,
            flash_attn=flash_attn_over_rpc(facts.head_dim_k, facts.head_dim_v),
        )  # fmt: skip

    async def close(self) -> None:
        for process in reversed(self.processes):
            await process.stop(5)
        for tunnel in self.tunnels:
            tunnel.close()
        await self.http.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-split-"))
    model = prepare_model(args, work)
    bench = Bench(args, model, work)
    result: dict[str, Any] = {"model": model.name, "size_bytes": model.stat().st_size}
    try:
        stacks = await start_stacks(bench, result)
        result["levels"] = await measure(bench, stacks, args)
    finally:
        await bench.close()
    return result


async def start_stacks(bench: Bench, result: dict[str, Any]) -> dict[str, Stack]:
    solo = await bench.host("solo", bench.spec("solo"))
    log(f"solo: loaded in {solo.load_s:.2f}s")
    # the split through the tunnel, loaded twice: cache empty, then filled by the first load
    rpc_port = await bench.rpc_server("rpc-tunnel")
    tunnel = TunnelEnds(bench.host_creds, bench.peer_creds, MESH, bench.args.tunnel_loop)
    bench.tunnels.append(tunnel)
    await asyncio.to_thread(tunnel.start, rpc_port, free_port())
    loads = []
    for attempt in ("cold", "cached"):
        sent_before = tunnel.traffic()["to_peer"]
        split = await bench.host(
            f"split-{attempt}", bench.spec("split", bench.layout(tunnel.endpoint))
        )
        sent = tunnel.traffic()["to_peer"] - sent_before
        loads.append({"load": attempt, "load_s": round(split.load_s, 2), "bytes_to_peer": sent})
        log(f"split ({attempt} cache): loaded in {split.load_s:.2f}s, "
            f"{sent / 1e6:.1f} MB to the peer")  # fmt: skip
        if attempt == "cold":
            await split.host.stop(10)
    split.tunnel = tunnel
    tcp_port = await bench.rpc_server("rpc-tcp")
    direct = await bench.host(
        "split-tcp", bench.spec("split-tcp", bench.layout(f"127.0.0.1:{tcp_port}"))
    )
    log(f"split-tcp: loaded in {direct.load_s:.2f}s")
    result["loads"] = [{"load": "solo", "load_s": round(solo.load_s, 2)}, *loads,
                       {"load": "split-tcp (cold)", "load_s": round(direct.load_s, 2)}]  # fmt: skip
    return {"solo": solo, "split": split, "split-tcp": direct}


async def measure(bench: Bench, stacks: dict[str, Stack], args: argparse.Namespace) -> list[dict]:
    config = argparse.Namespace(requests_per_stream=args.requests, max_tokens=args.max_tokens)
    levels = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
    ) as http:
        for level in args.concurrency:
            rounds: dict[str, list[overhead.Round]] = {side: [] for side in SIDES}
            trips = tokens = 0
            for index in range(args.rounds + 1):  # the first round of each side warms up
                order = SIDES[index % 3 :] + SIDES[: index % 3]
                for side in order:
                    stack = stacks[side]
                    before = stack.tunnel.traffic()["round_trips"] if stack.tunnel else 0
                    rnd = await overhead.run_round(
                        http,
                        f"http://127.0.0.1:{stack.port}",
                        side,
                        bench.model.stem,
                        level,
                        config,  # type: ignore[arg-type]
                    )
                    if index:
                        rounds[side].append(rnd)
                        if stack.tunnel is not None:
                            trips += stack.tunnel.traffic()["round_trips"] - before
                            tokens += rnd.tokens
            stats = {side: overhead.side_stats(rounds[side], args.max_tokens) for side in SIDES}
            solo = stats["solo"]
            row: dict[str, Any] = {"concurrency": level}
            for side, s in stats.items():
                row[side] = {
                    "tokens_per_s": s.aggregate_tps,
                    "stream_tokens_per_s": s.stream_tps_p50,
                    "ttft_p50_ms": s.ttft_p50_ms,
                    "errors": s.errors,
                }
                if side != "solo":
                    row[side]["vs_solo"] = overhead.ratio(s.aggregate_tps, solo.aggregate_tps)
            row["rpc_round_trips_per_token"] = trips / tokens if tokens else None
            log(json.dumps(row))
            levels.append(row)
    return levels


def prepare_model(args: argparse.Namespace, work: Path) -> Path:
    if args.model:
        return Path(args.model)
    shape = SHAPES[args.shape]
    log(f"generating the {args.shape} model (random weights, {shape.dtype})…")
    started = time.perf_counter()
    path = cached_model(shape)
    log(f"  {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - started:.0f}s")
    if not args.quantize:
        return path
    quantized = path.with_name(f"{path.stem}-{args.quantize}.gguf")
    if not quantized.is_file():
        quantize = find_companion("llama-quantize", find_binary("llama-server").path)
        assert quantize is not None, "no llama-quantize beside llama-server"
        started = time.perf_counter()
        subprocess.run([quantize.path, str(path), str(quantized), args.quantize,
                        str(os.cpu_count() or 4)], check=True, capture_output=True)  # fmt: skip
        log(f"  quantized to {args.quantize} ({quantized.stat().st_size / 1e9:.2f} GB) in "
            f"{time.perf_counter() - started:.0f}s")  # fmt: skip
    return quantized


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"Model {result['model']} ({result['size_bytes'] / 1e9:.2f} GB); "
             f"`{result['command']}`.", ""]  # fmt: skip
    lines += ["| load | seconds | bytes to the peer |", "|---|---|---|"]
    for load in result["loads"]:
        lines.append(f"| {load['load']} | {load['load_s']} | {load.get('bytes_to_peer', '')} |")
    lines += ["", "| streams | side | tokens/s | per stream | TTFT p50 ms | vs solo |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["levels"]:
        for side in SIDES:
            s = row[side]
            lines.append(
                f"| {row['concurrency']} | {side} | {overhead.fmt(s['tokens_per_s'])} | "
                f"{overhead.fmt(s['stream_tokens_per_s'])} | {overhead.fmt(s['ttft_p50_ms'])} | "
                f"{overhead.fmt(s.get('vs_solo'), '.3f')} |"
            )
        trips = overhead.fmt(row["rpc_round_trips_per_token"], ".2f")
        level = row["concurrency"]
        lines.append(f"| {level} | RPC round trips per token (tunnel) | {trips} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="a GGUF (default: generate --shape)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cpu")
    parser.add_argument("--quantize", default="", help="quantize the generated model (Q4_K_M)")
    parser.add_argument("--gpu", action="store_true", help="every process on GPU 0")
    parser.add_argument("--concurrency", type=overhead.parse_levels, default=(1, 4))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2, help="requests per stream a round")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--prompt-cache-mib",
        type=int,
        default=0,
        help="solo's --cache-ram (a split host always runs with 0); 0 compares like with like",
    )
    parser.add_argument(
        "--tunnel-loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="the event loop of the tunnel's processes",
    )  # fmt: skip
    parser.add_argument(
        "--flash-attn", choices=("mesh", "off", "on"), default="mesh",
        help="mesh: as the mesh runs them (solo auto, a split's host by its head sizes); off or "
        "on: every llama-server alike",
    )  # fmt: skip
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    result["machine"] = f"{platform.node()} {os.cpu_count()} cores"
    result["command"] = " ".join(sys.argv)
    print(render_markdown(result) if args.markdown else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
