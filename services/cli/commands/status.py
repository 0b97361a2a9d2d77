"""`mesh-llm status`: the mesh seen from this machine, or one model in full."""

from __future__ import annotations

import argparse

from .common import Subcommands, add_api_key_flag, fail


def add_parser(commands: Subcommands) -> None:
    status = commands.add_parser(
        "status",
        help="the mesh's nodes and models, and why each model is where it is",
        description="The mesh seen from a node's console API: every node with its role, "
        "devices, memory and round trip, every model with its state and where it runs, and "
        "for a model that waits, the scheduler's reasons. Name a MODEL for it in full: each "
        "replica, split part or expert shard (with its experts and measured quality), the "
        "demand behind it, and what the scheduler wants next.",
    )
    status.add_argument("model", nargs="?", default="", help="a model's name or alias")
    status.add_argument(
        "--console",
        default="",
        metavar="URL",
        help="a node's console, http://host:port (default: the node running on this "
        "machine, else http://localhost:3131)",
    )
    add_api_key_flag(status)
    status.add_argument("--json", action="store_true", help="print /api/status's JSON")
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..local import running_nodes
    from ..status import StatusError, fetch_status, find_model, mesh_lines, model_lines

    nodes = [node for node in running_nodes() if node.console]
    console = args.console or (nodes[0].console if nodes else "http://localhost:3131")
    if not console.startswith(("http://", "https://")):
        return fail(f"--console {console}: give a URL, http(s)://host:port")
    try:
        status = fetch_status(console, args.api_key)
        model = find_model(status, args.model) if args.model else None
    except StatusError as exc:
        return fail(str(exc))
    status.this_node.invite_token = ""  # `mesh-llm invite` mints one; output gets pasted
    if args.json:
        print((model or status).model_dump_json(indent=2))
    else:
        print("\n".join(model_lines(model) if model else mesh_lines(status)))
    return 0
