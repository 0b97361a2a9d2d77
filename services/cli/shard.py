"""`mesh-llm dev shard MODEL --nodes N`: the expert-shard pipeline by hand, on one machine.
Ranks the experts (llama-imatrix on the calibration text), assigns them to N shards
(`scheduler.experts`), writes each shard with a progress bar, and measures each against the
full model (the quality gate). Prints a table, or JSON with --json."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

GATE_FAILED = 3  # the exit status when a shard fails the quality gate


def add_parser(commands: Any) -> None:
    shard = commands.add_parser(
        "shard",
        help="split a mixture-of-experts GGUF into expert shards and measure them",
        description="Rank MODEL's experts by router picks on a calibration text, give each of "
        "--nodes shards a core of the best experts plus its share of the rest, write the "
        "shards (full trunk, subset of experts) and measure each against the full model "
        "(perplexity ratio and top-token agreement). Shards that fail the gate are reported, "
        "not deleted, and the exit status is 3.",
    )
    shard.add_argument("model", help="a mixture-of-experts .gguf (llama, qwen2moe, qwen3moe)")
    shard.add_argument("--nodes", type=int, default=2, help="how many shards (default 2)")
    shard.add_argument(
        "--experts", type=int, default=0,
        help="experts per shard (default: the fewest that cover every expert with a core of "
        "half of them)",
    )  # fmt: skip
    shard.add_argument("--out", default="", help="folder for the shards (default: beside MODEL)")
    shard.add_argument("--threads", type=int, default=1, help="threads for imatrix/perplexity")
    shard.add_argument(
        "--max-ppl-ratio", type=float, default=None,
        help="the most a shard's perplexity may exceed the full model's (default 1.15)",
    )  # fmt: skip
    shard.add_argument(
        "--min-same-top", type=float, default=None,
        help="the least top-token agreement with the full model (default 0.60)",
    )  # fmt: skip
    shard.add_argument("--json", action="store_true", help="print JSON")
    shard.set_defaults(run=run_shard)


def run_shard(args: argparse.Namespace) -> int:
    from meshllm.core.errors import Unavailable
    from meshllm.registry.quality import QualityError
    from meshllm.registry.shards import ShardError
    from meshllm.scheduler.experts import ExpertPlanError

    try:
        report = shard_model(args)
    except (ShardError, ExpertPlanError, QualityError, Unavailable, OSError) as exc:
        print(f"mesh-llm dev shard: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"experts ranked by {report['ranking']['note']}")
        for shard in report["shards"]:
            print(f"{shard['path']}: {shard['experts']} experts, "
                  f"{shard['size_bytes'] / 1e6:.1f} MB; {shard['quality']}")  # fmt: skip
    return 0 if all(s["passed"] for s in report["shards"]) else GATE_FAILED


def shard_model(args: argparse.Namespace) -> dict[str, Any]:
    from meshllm.core.binaries import find_binary, find_companion
    from meshllm.registry.expert_ranking import rank_experts
    from meshllm.registry.quality import DEFAULT_MAX_PPL_RATIO, DEFAULT_MIN_SAME_TOP, Perplexity
    from meshllm.registry.shards import ShardError, moe_layout, open_model, write_shard
    from meshllm.scheduler.experts import assign_experts, covering_size, floor_for

    max_ratio = args.max_ppl_ratio or DEFAULT_MAX_PPL_RATIO
    min_same_top = DEFAULT_MIN_SAME_TOP if args.min_same_top is None else args.min_same_top
    model = Path(args.model)
    if args.nodes < 1:
        raise ShardError("--nodes must be at least 1")
    if args.experts < 0:
        raise ShardError("--experts must be a number of experts per shard (or 0: the fewest)")
    layout = moe_layout(open_model(model), model)
    llama = find_binary("llama-server").path
    imatrix = find_companion("llama-imatrix", llama)
    perplexity = find_companion("llama-perplexity", llama)
    if perplexity is None:
        raise ShardError("no llama-perplexity beside llama-server: run `make llama`")
    say(args, f"ranking {layout.expert_count} experts per layer …")
    ranking = rank_experts(model, imatrix.path if imatrix else None, threads=args.threads)
    per_node = args.experts or covering_size(layout.expert_count, args.nodes)
    plan = assign_experts(
        ranking.order, [per_node] * args.nodes, floor=floor_for(
            layout.expert_count, layout.expert_used_count)
    )  # fmt: skip
    out = Path(args.out) if args.out else model.parent
    gauge = Perplexity(perplexity.path, threads=args.threads)
    shards = []
    with tempfile.TemporaryDirectory(prefix="mesh-shard-") as work:
        base = Path(work) / "full.kld"
        say(args, "measuring the full model …")
        gauge.save_base(model, base)
        for node, experts in enumerate(plan.shards):
            dest = out / f"{model.stem}-shard{node + 1}of{args.nodes}.gguf"
            bar = ProgressBar(f"writing {dest.name}", enabled=not args.json)
            result = write_shard(model, dest, experts, bar.update)
            bar.close()
            verdict = gauge.judge(dest, base, max_ratio, min_same_top)
            shards.append({
                "path": str(dest), "experts": result.expert_count,
                "experts_used": result.expert_used_count, "size_bytes": result.size_bytes,
                "expert_ids": [list(layer) for layer in experts], "passed": verdict.passed,
                "ppl_ratio": verdict.ppl_ratio, "same_top": verdict.same_top,
                "quality": verdict.describe(),
            })  # fmt: skip
    return {
        "model": str(model),
        "ranking": {"method": ranking.method, "note": ranking.note},
        "core": plan.core,
        "shards": shards,
    }


def say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


class ProgressBar:
    """A one-line bar on stderr when it is a terminal; silent otherwise."""

    WIDTH = 30

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._shown = -1

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        percent = done * 100 // total
        if percent == self._shown:
            return
        self._shown = percent
        filled = self.WIDTH * done // total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        print(f"\r{self.label} [{bar}] {percent:3d}% {done / 1e6:,.0f}/{total / 1e6:,.0f} MB",
              end="", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.enabled and self._shown >= 0:
            print(file=sys.stderr, flush=True)
