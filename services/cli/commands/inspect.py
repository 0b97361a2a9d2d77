"""`mesh-llm inspect FILE`: what a GGUF file holds."""

from __future__ import annotations

import argparse
import json

from .common import Subcommands, fail


def add_parser(commands: Subcommands) -> None:
    inspect = commands.add_parser("inspect", help="show the facts of a GGUF file")
    inspect.add_argument("path", help="a .gguf file")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
