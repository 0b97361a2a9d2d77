"""The `mesh-llm` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Mesh LLM pools the GPUs (or CPUs) of several machines and serves their models as one
OpenAI-compatible API at http://localhost:9337/v1.

  mesh-llm serve --model smollm2          serve a built-in demo chat model on this machine
  mesh-llm serve --gguf ./model.gguf      serve a GGUF file
  mesh-llm inspect ./model.gguf           show what a GGUF file holds
  mesh-llm dev make-model                 write a small random-weight test model
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh-llm",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the mesh's services on this machine and serve models",
        description="Start etcd (unless --etcd), registry, scheduler, worker and gateway on this "
        "machine, serve the given models, and run until Ctrl-C.",
    )
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="a model name: a built-in (smollm2) or NAME.gguf in ~/.mesh-llm/models (repeatable)",
    )
    serve.add_argument(
        "--gguf",
        action="append",
        default=[],
        metavar="PATH",
        help="a GGUF model file to serve (repeatable)",
    )
    serve.add_argument("--port", type=int, default=9337, help="API port (default 9337)")
    serve.add_argument(
        "--console-port", type=int, default=3131, help="console port (default 3131; 0 turns it off)"
    )
    serve.add_argument(
        "--etcd",
        default="",
        metavar="HOST:PORT",
        help="use this etcd instead of starting a private one",
    )
    serve.add_argument(
        "--node", default="", help="this machine's name in the mesh (default: hostname)"
    )
    serve.add_argument("--device", default="auto", help="'auto', 'cpu', or a GPU index")
    serve.add_argument(
        "--cpu-memory",
        type=float,
        default=0.0,
        metavar="GIB",
        help="memory the CPU device may use for models (default: half of free RAM)",
    )
    serve.add_argument(
        "--context", type=int, default=0, help="context size per model (default 4096)"
    )
    serve.add_argument("--parallel", type=int, default=4, help="slots per llama-server (default 4)")
    serve.add_argument("--state-dir", default="", help="where logs and etcd data go")
    serve.add_argument("--json", action="store_true", help="print events as JSON lines")
    serve.add_argument("--verbose", action="store_true", help="show the services' logs")

    inspect = commands.add_parser("inspect", help="show the facts of a GGUF file")
    inspect.add_argument("path", help="a .gguf file")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    dev = commands.add_parser("dev", help="tools for development and tests")
    dev_commands = dev.add_subparsers(dest="dev_command", metavar="TOOL")
    make = dev_commands.add_parser(
        "make-model",
        help="write a small llama-architecture GGUF with random weights",
        description="Write (or reuse from the cache) a small random-weight llama GGUF. "
        "It loads and generates like a real model, but its text is gibberish.",
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
    make.add_argument("--out", default="", help="write here instead of the cache")
    make.add_argument("--json", action="store_true", help="print JSON")
    return parser


def fail(message: str) -> int:
    print(f"mesh-llm: error: {message}", file=sys.stderr)
    return 1


def run_serve(args: argparse.Namespace) -> int:
    from .serve import ServeError, ServeOptions, serve

    for flag, value in (("--port", args.port), ("--console-port", args.console_port)):
        if not 0 <= value <= 65535 or (flag == "--port" and value == 0):
            return fail(f"{flag} {value} is not a valid port")
    opts = ServeOptions(
        models=[*args.model, *args.gguf],
        port=args.port,
        console_port=args.console_port,
        etcd=args.etcd,
        node=args.node,
        device=args.device,
        cpu_memory_gib=args.cpu_memory,
        context=args.context,
        parallel=args.parallel,
        state_dir=args.state_dir,
        json=args.json,
        verbose=args.verbose,
    )
    for path in args.gguf:
        if not Path(path).is_file():
            return fail(f"--gguf {path}: no such file")
    try:
        return asyncio.run(serve(opts))
    except ServeError as exc:
        return fail(str(exc))


def run_inspect(args: argparse.Namespace) -> int:
    from meshllm.registry.gguf_facts import GgufError, read_facts

    try:
        facts = read_facts(args.path)
    except GgufError as exc:
        return fail(str(exc))
    values = {k: getattr(facts, k) for k in facts.__dataclass_fields__}
    if args.json:
        print(json.dumps(values))
    else:
        width = max(map(len, values))
        for key, value in values.items():
            print(f"{key:<{width}}  {value}")
    return 0


def run_make_model(args: argparse.Namespace) -> int:
    from .make_model import ModelShape, cached_model, find_vocab_file, write_model

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "inspect":
        return run_inspect(args)
    if args.command == "dev" and args.dev_command == "make-model":
        return run_make_model(args)
    if args.command == "dev":
        parser.parse_args(["dev", "--help"])
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
