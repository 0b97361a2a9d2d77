"""A soak with faults: two serving nodes in their own network namespaces (as in the tests'
lab), `--streams` streamed chat completions kept busy through the first node's gateway for
`--minutes`, while faults hit the second node (and the first node's store) on a schedule.
Every request ends completed, failed cleanly (an error the client can read), failed dirty
(dropped) or hung. Reported: those counts, time to first token p50/p99, and each service's
memory (RSS) on each node after warm-up and at the end. Needs root (network namespaces).

    .venv/bin/python bench/soak.py --minutes 10 --streams 32 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "faults")]

from harness import PROCESS_MARKERS, ServeProcess, lab_node  # noqa: E402
from helpers import descendants  # noqa: E402
from load import Load, Outcome  # noqa: E402
from netns import Lab, netns_supported  # noqa: E402

from meshllm.cli.make_model import ModelShape, cached_model  # noqa: E402


def log(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Fault:
    at_s: float
    name: str
    action: Callable[[], None]


def rss_by_service(node: ServeProcess) -> dict[str, int]:
    """Resident memory (bytes) of each process kind below the node's serve."""
    found: dict[str, int] = {}
    for pid, command in descendants(node.pid).items():
        kind = next((k for k, marker in PROCESS_MARKERS.items() if marker in command), None)
        if kind is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        found[kind] = found.get(kind, 0) + int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    return found


def kill(node: ServeProcess, kind: str, sig: int = signal.SIGKILL) -> Callable[[], None]:
    def act() -> None:
        for pid in node.pids(kind):
            os.kill(pid, sig)

    return act


def freeze(node: ServeProcess, kind: str, seconds: float) -> Callable[[], None]:
    def act() -> None:
        pids = node.pids(kind)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    return act


def cut(node: ServeProcess, seconds: float) -> Callable[[], None]:
    def act() -> None:
        assert node.host is not None
        link = lambda state: subprocess.run(  # noqa: E731
            node.host.command(["ip", "link", "set", "eth0", state]), check=True
        )
        link("down")
        time.sleep(seconds)
        link("up")

    return act


def schedule(n1: ServeProcess, n2: ServeProcess, minutes: float) -> list[Fault]:
    step = minutes * 60 / 7
    return [
        Fault(1 * step, "n2: llama-server SIGKILL", kill(n2, "llama-server")),
        Fault(2 * step, "n2: worker SIGKILL", kill(n2, "worker")),
        Fault(3 * step, "n2: link cut for 10 s", cut(n2, 10)),
        Fault(4 * step, "n1: etcd SIGKILL", kill(n1, "etcd")),
        Fault(5 * step, "n2: llama-server SIGSTOP for 8 s", freeze(n2, "llama-server", 8)),
        Fault(6 * step, "n2: gateway SIGKILL", kill(n2, "gateway")),
    ]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(outcomes: list[Outcome], warm_until: float) -> dict[str, Any]:
    counted = [o for o in outcomes if o.started >= warm_until]
    ttfts = [o.ttft_s * 1000 for o in counted if o.result == "ok" and o.ttft_s is not None]
    by = {
        kind: sum(1 for o in counted if o.result == kind)
        for kind in ("ok", "clean", "dirty", "hung")
    }
    details: dict[str, int] = {}
    for o in counted:
        if o.result != "ok":
            details[f"{o.result}: {o.detail[:70]}"] = (
                details.get(f"{o.result}: {o.detail[:70]}", 0) + 1
            )
    return {
        "requests": len(counted),
        "completed": by["ok"],
        "failed_clean": by["clean"],
        "failed_dropped": by["dirty"],
        "hung": by["hung"],
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p99_ms": percentile(ttfts, 99),
        "failures": dict(sorted(details.items(), key=lambda item: -item[1])[:8]),
    }


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    reason = netns_supported()
    if reason is not None:
        raise SystemExit(f"the soak needs network namespaces: {reason}")
    model = cached_model(ModelShape())
    state = Path(tempfile.mkdtemp(prefix="mesh-soak-"))
    lab = Lab.create(2)
    nodes: dict[str, ServeProcess] = {}
    serve_flags = ("--gguf", str(model), "--threads", "1", "--parallel", str(args.streams))
    try:
        h1, h2 = lab.hosts
        nodes["n1"] = lab_node(h1, "n1", state, "serve", *serve_flags).start()
        token = nodes["n1"].wait_event("ready")["token"]
        nodes["n2"] = lab_node(h2, "n2", state, "serve", "--join", token, *serve_flags).start()
        for node in nodes.values():
            node.wait_event("model_ready")
        gateway = nodes["n1"]
        while sorted(gateway.served().get(model.stem, [])) != ["n1", "n2"]:
            time.sleep(0.5)
        log(f"two nodes serve {model.stem}; {args.streams} streams for {args.minutes} min")
        load = Load(
            gateway.api, model.stem, streams=args.streams, max_tokens=args.max_tokens,
            hang_after_s=args.hang_after, headers=gateway.headers,
        ).start()  # fmt: skip
        time.sleep(args.warmup)
        warm_until = time.monotonic()
        memory_start = {name: rss_by_service(node) for name, node in nodes.items()}
        faults = schedule(nodes["n1"], nodes["n2"], args.minutes)
        for fault in faults:
            delay = warm_until + fault.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            log(f"fault: {fault.name}")
            fault.action()
        remaining = warm_until + args.minutes * 60 - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        memory_end = {name: rss_by_service(node) for name, node in nodes.items()}
        outcomes = load.stop()
    finally:
        for node in nodes.values():
            node.stop(30)
        lab.destroy()
    return {
        "command": command,
        "model": model.stem,
        "streams": args.streams,
        "minutes": args.minutes,
        "faults": [f"{f.at_s:.0f} s: {f.name}" for f in faults],
        **summarize(outcomes, warm_until),
        "memory_start_mb": {
            n: {k: round(v / 2**20, 1) for k, v in m.items()} for n, m in memory_start.items()
        },
        "memory_end_mb": {
            n: {k: round(v / 2**20, 1) for k, v in m.items()} for n, m in memory_end.items()
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    lines = [
        f"```\n{result['command']}\n```",
        "",
        f"{result['streams']} streams for {result['minutes']} min, model {result['model']}; "
        f"faults: {'; '.join(result['faults'])}.",
        "",
        "| requests | completed | failed (clean) | failed (dropped) | hung | TTFT p50 ms "
        "| TTFT p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['requests']} | {result['completed']} | {result['failed_clean']} | "
        f"{result['failed_dropped']} | {result['hung']} | {fmt(result['ttft_p50_ms'])} | "
        f"{fmt(result['ttft_p99_ms'])} |",
        "",
        "| node | service | RSS after warm-up MB | RSS at the end MB |",
        "|---|---|---:|---:|",
    ]
    for node, start in result["memory_start_mb"].items():
        end = result["memory_end_mb"].get(node, {})
        for service in sorted(set(start) | set(end)):
            lines.append(
                f"| {node} | {service} | {start.get(service, '-')} | {end.get(service, '-')} |"
            )
    if result["failures"]:
        lines += [
            "",
            "Failures: " + "; ".join(f"{k} (x{v})" for k, v in result["failures"].items()),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before counting")
    parser.add_argument("--hang-after", type=float, default=120.0)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--markdown", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "bench/soak.py", *(sys.argv[1:] if argv is None else argv)])
    result = run(args, command)
    print(json.dumps(result, indent=2) if args.json else render_markdown(result))
    return 0 if result["hung"] == 0 and result["failed_dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
