"""`mesh-llm enrol`: join a mesh with an invite and write this box's credentials (containers)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .common import Subcommands, fail


def add_parser(commands: Subcommands) -> None:
    enrol = commands.add_parser(
        "enrol",
        help="join a mesh with an invite token and write this box's credentials",
        description="Enrol this box (container deployments): its credentials go to --dir for "
        "the box's services (MESH_TLS_DIR). Nothing happens when --dir already holds a "
        "membership of that mesh.",
    )
    enrol.add_argument("--join", required=True, metavar="TOKEN", help="the invite token")
    enrol.add_argument("--dir", required=True, help="where to write the credentials")
    enrol.add_argument("--node", required=True, help="this box's node name")
    enrol.add_argument("--host", default="", help="this box's address, listed in its certificate")
    enrol.add_argument("--json", action="store_true", help="print JSON")
    enrol.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..containers import DeployError, run_enrol

    try:
        return asyncio.run(run_enrol(args.join, Path(args.dir), args.node, args.host, args.json))
    except DeployError as exc:
        return fail(str(exc))
