"""`mesh-llm invite`: mint a token that lets another machine join."""

from __future__ import annotations

import argparse

from .common import Subcommands, add_credentials_flag, fail


def add_parser(commands: Subcommands) -> None:
    invite = commands.add_parser(
        "invite",
        help="mint an invite token that lets another machine join this node's mesh",
        description="Ask the mesh's authority for a new invite token, using the credentials "
        "of a node running on this machine (or --credentials). The token lets its holder "
        "join until it expires or is used up: share it like a password.",
    )
    invite.add_argument(
        "--ttl",
        default="24h",
        metavar="DURATION",
        help="how long the token stays valid: 90s, 30m, 24h, 7d, or 'never' (default 24h)",
    )
    invite.add_argument(
        "--uses", type=int, default=-1, help="how many machines may join with it (default: any)"
    )
    invite.add_argument(
        "--client",
        action="store_true",
        help="an API client's token (`mesh-llm client --join`): it cannot serve models",
    )
    add_credentials_flag(invite)
    invite.add_argument("--json", action="store_true", help="print JSON")
    invite.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..admin import AdminError, invite

    try:
        return invite(args.credentials, args.ttl, args.uses, args.client, args.json)
    except AdminError as exc:
        return fail(str(exc))
