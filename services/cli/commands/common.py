"""What every command module shares: each adds its parser to the `mesh-llm` parser (and
sets `run`), and fails with one line and exit status 1."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TypeAlias

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def fail(message: str) -> int:
    print(f"mesh-llm: error: {message}", file=sys.stderr)
    return 1


def add_credentials_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credentials",
        default="",
        metavar="DIR",
        help="a node's credentials directory (default: MESH_TLS_DIR, else the node that "
        "`mesh-llm serve` runs on this machine)",
    )


def add_api_key_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MESH_LLM_API_KEY", ""),
        metavar="KEY",
        help="the key the mesh's API wants, if it wants one (default: $MESH_LLM_API_KEY)",
    )


def help_of(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0
