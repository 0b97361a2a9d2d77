"""`mesh-llm members`: the machines that joined the mesh."""

from __future__ import annotations

import argparse

from .common import Subcommands, add_credentials_flag, fail


def add_parser(commands: Subcommands) -> None:
    members = commands.add_parser("members", help="list the machines that joined the mesh")
    add_credentials_flag(members)
    members.add_argument("--json", action="store_true", help="print JSON")
    members.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..admin import AdminError, members

    try:
        return members(args.credentials, args.json)
    except AdminError as exc:
        return fail(str(exc))
