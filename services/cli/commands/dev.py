"""`mesh-llm dev …`: tools for development and tests (a random-weight model, expert
shards by hand)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from meshllm.registry.shards import MOE_ARCHITECTURES

from .. import shard
from .common import Subcommands, fail, help_of


def add_parser(commands: Subcommands) -> None:
    dev = commands.add_parser("dev", help="tools for development and tests")
    dev_commands = dev.add_subparsers(dest="dev_command", metavar="TOOL")
    make = dev_commands.add_parser(
        "make-model",
        help="write a small GGUF with random weights (dense, or a mixture of experts)",
        description="Write (or reuse from the cache) a small random-weight GGUF: a dense "
        "llama model, or with --experts a mixture in the llama (Mixtral), qwen2moe or "
        "qwen3moe layout. It loads and generates like a real model, but its text is "
        "gibberish.",
    )
    make.add_argument("--layers", type=int, default=4)
    make.add_argument("--embedding", type=int, default=128)
    make.add_argument("--feed-forward", type=int, default=256)
    make.add_argument("--heads", type=int, default=4)
    make.add_argument("--kv-heads", type=int, default=2)
    make.add_argument("--context", type=int, default=2048)
    make.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--name", default="tiny-llama")
    make.add_argument("--experts", type=int, default=0, help="a mixture of this many experts")
    make.add_argument("--experts-used", type=int, default=0, help="experts picked per token")
    make.add_argument(
        "--router", choices=["random", "pairs"], default="random",
        help="pairs: the first 2 x experts-used experts always win (for shard tests)",
    )  # fmt: skip
    make.add_argument(
        "--architecture", choices=list(MOE_ARCHITECTURES), default="llama",
        help="a mixture's layout (a dense model is always llama)",
    )  # fmt: skip
    make.add_argument("--out", default="", help="write here instead of the cache")
    make.add_argument("--json", action="store_true", help="print JSON")
    make.set_defaults(run=run_make_model)
    shard.add_parser(dev_commands)
    dev.set_defaults(run=lambda args: help_of(dev))


def run_make_model(args: argparse.Namespace) -> int:
    from ..make_model import ModelShape, cached_model, find_vocab_file, write_model

    try:
        shape = ModelShape(
            layers=args.layers,
            embedding=args.embedding,
            feed_forward=args.feed_forward,
            heads=args.heads,
            kv_heads=args.kv_heads,
            context=args.context,
            dtype=args.dtype,
            seed=args.seed,
            name=args.name,
            experts=args.experts,
            experts_used=args.experts_used,
            router=args.router,
            architecture=args.architecture,
        )
    except ValueError as exc:
        return fail(f"invalid model shape: {exc}")
    try:
        if args.out:
            path = write_model(Path(args.out), shape, find_vocab_file(shape.vocab))
        else:
            path = cached_model(shape)
    except FileNotFoundError as exc:
        return fail(str(exc))
    print(json.dumps({"path": str(path)}) if args.json else path)
    return 0
