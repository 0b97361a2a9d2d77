"""Shard quality against shard size: for each size tried, the shard of that many experts that
the mesh's own pipeline makes (experts ranked by llama-imatrix, the best-ranked kept in every
layer, written by `registry.shards`) is measured against the full model by `llama-perplexity`
on the calibration text, as the quality gate does: the perplexity ratio, the top-token
agreement, the KL divergence, and the gate's verdict.

Generated mixtures (8 experts, top 2): one routed so that experts 0-3 always win (a shard
keeping them is the model), one with a random router, where every expert dropped changes
some tokens, and the routed one in the qwen3moe and qwen2moe layouts (qwen2moe does not
renormalise the picked experts' weights, so every dropped expert takes its softmax share
with it).

    .venv/bin/python bench/shard_quality.py --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core.binaries import llama_tool
from meshllm.registry.expert_ranking import rank_experts
from meshllm.registry.quality import Perplexity
from meshllm.registry.shards import write_shard

MODELS = {
    "routed (experts 0-3 always win)": ModelShape(
        layers=4, embedding=256, feed_forward=512, heads=4, kv_heads=2, name="quality-pairs",
        experts=8, experts_used=2, router="pairs", seed=21,
    ),
    "random router": ModelShape(
        layers=4, embedding=256, feed_forward=512, heads=4, kv_heads=2, name="quality-random",
        experts=8, experts_used=2, router="random", seed=22,
    ),
    "qwen3moe, routed": ModelShape(
        layers=4, embedding=256, feed_forward=512, heads=4, kv_heads=2, name="quality-qwen3",
        experts=8, experts_used=2, router="pairs", seed=23, architecture="qwen3moe",
    ),
    "qwen2moe, routed (router logits x4)": ModelShape(
        layers=4, embedding=256, feed_forward=512, heads=4, kv_heads=2, name="quality-qwen2",
        experts=8, experts_used=2, router="pairs", seed=24, architecture="qwen2moe",
        router_scale=4.0,
    ),
}  # fmt: skip
SIZES = (8, 7, 6, 5, 4, 3, 2)


def measure(label: str, shape: ModelShape, gauge: Perplexity, work: Path) -> list[dict]:
    model = cached_model(shape)
    ranking = rank_experts(model, llama_tool("llama-imatrix"), threads=gauge.threads)
    base = work / f"{shape.name}.kld"
    gauge.save_base(model, base)
    rows = []
    for size in SIZES:
        kept = [sorted(order[:size]) for order in ranking.order]
        shard = write_shard(model, work / f"{shape.name}-{size}.gguf", kept).path
        verdict = gauge.judge(shard, base)
        rows.append({
            "model": label, "experts": size, "of": shape.experts, "ranking": ranking.method,
            "ppl_ratio": round(verdict.ppl_ratio, 4), "same_top": round(verdict.same_top, 4),
            "mean_kld": round(max(verdict.mean_kld, 0.0), 5) + 0.0, "passed": verdict.passed,
        })  # fmt: skip
        shard.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    binary = llama_tool("llama-perplexity")
    if binary is None:
        sys.exit("no llama-perplexity beside llama-server: run `make llama`")
    gauge = Perplexity(binary, threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="shard-quality-") as folder:
        rows = [row for label, shape in MODELS.items()
                for row in measure(label, shape, gauge, Path(folder))]  # fmt: skip
    if not args.markdown:
        print(json.dumps(rows, indent=2))
        return
    print("| model | experts kept | perplexity ratio | same top token | KL divergence | gate |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['experts']} of {r['of']} | {r['ppl_ratio']:.4f} | "
              f"{r['same_top']:.1%} | {r['mean_kld']:.5f} | "
              f"{'passes' if r['passed'] else 'fails'} |")  # fmt: skip


if __name__ == "__main__":
    main()
