"""`mesh-llm credentials issue`: node certificates from a CA given as files (e.g. by Helm)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Subcommands, fail, help_of


def add_parser(commands: Subcommands) -> None:
    credentials = commands.add_parser("credentials", help="certificates from a given CA")
    credential_commands = credentials.add_subparsers(dest="credentials_command", metavar="TOOL")
    issue = credential_commands.add_parser(
        "issue",
        help="issue a node certificate from a CA given as files (e.g. made by Helm)",
        description="Write ca.crt, node.crt and node.key for NODE into --out, signed by the "
        "CA in --ca-dir (ca.crt and ca.key). For clusters whose installer makes the CA.",
    )
    issue.add_argument("--ca-dir", required=True)
    issue.add_argument("--mesh-id", required=True)
    issue.add_argument("--node", required=True)
    issue.add_argument("--role", choices=["node", "client", "authority"], default="node")
    issue.add_argument("--host", action="append", default=[], help="an address to list")
    issue.add_argument("--out", required=True)
    credentials.set_defaults(run=lambda args: help_of(credentials))
    issue.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..containers import DeployError, issue_from_files

    try:
        identity = issue_from_files(
            Path(args.ca_dir), args.mesh_id, args.node, args.role, Path(args.out), tuple(args.host)
        )
    except DeployError as exc:
        return fail(str(exc))
    print(f"issued {identity.node} ({identity.role}) in mesh {identity.mesh_id}")
    return 0
