"""The `mesh-llm` command: the parser of every command (cli/commands/), and the dispatch."""

from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS

DESCRIPTION = """\
Mesh LLM pools the GPUs (or CPUs) of several machines and serves their models as one
OpenAI-compatible API at http://localhost:9337/v1.

  mesh-llm serve --model smollm2          start a mesh serving a built-in demo chat model
  mesh-llm serve --gguf ./model.gguf      serve a GGUF file
  mesh-llm serve --model org/repo/m.gguf  serve a Hugging Face GGUF (or a catalog name)
  mesh-llm models search qwen             find models by name (also: show, download,
                                          installed, cleanup)
  mesh-llm serve --join TOKEN --model X   add this machine to a mesh, serving X
  mesh-llm client --join TOKEN            use a mesh's API from this machine
  mesh-llm discover                       list meshes published on the local network
  mesh-llm claude|goose|opencode          run an agent on the mesh's models (-- ARGS)
  mesh-llm invite [--ttl 1h] [--client]   mint an invite token for another machine
  mesh-llm revoke NODE                    remove a node from the mesh
  mesh-llm status [MODEL]                 the mesh's nodes and models, and why each is where
  mesh-llm inspect ./model.gguf           show what a GGUF file holds
  mesh-llm gpus [--json]                  this machine's devices (measure: gpu benchmark)
  mesh-llm service install -- FLAGS       run `serve FLAGS` as a user service (systemd, launchd)
  mesh-llm dev make-model                 write a small random-weight test model
  mesh-llm dev shard MODEL --nodes N      split a mixture of experts into measured shards
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh-llm",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    return int(run(args))


if __name__ == "__main__":
    sys.exit(main())
