"""`mesh-llm revoke NODE`: cut a node off the mesh everywhere at once."""

from __future__ import annotations

import argparse

from .common import Subcommands, add_credentials_flag, fail


def add_parser(commands: Subcommands) -> None:
    revoke = commands.add_parser(
        "revoke",
        help="remove a node from the mesh",
        description="Revoke a node: its certificate stops working everywhere at once (etcd, "
        "every service, every relay) and its models leave the mesh. It can come back only "
        "with a new invite.",
    )
    revoke.add_argument("node", help="the node's name (mesh-llm members lists them)")
    add_credentials_flag(revoke)
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..admin import AdminError, revoke

    try:
        return revoke(args.credentials, args.node, args.json)
    except AdminError as exc:
        return fail(str(exc))
