"""`mesh-llm authority`: the founding box's CA and authority, for container deployments."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .common import Subcommands, fail


def add_parser(commands: Subcommands) -> None:
    authority = commands.add_parser(
        "authority",
        help="run the founding box's CA and authority (container deployments)",
        description="For a mesh run from containers: make the mesh's CA once (in --dir), wait "
        "for an etcd that uses its certificate, admit this box's node (credentials in "
        "DIR/node for the box's services) and keep the enrolment door open. `mesh-llm serve` "
        "does all of this itself.",
    )
    authority.add_argument("--dir", required=True, help="where the CA and credentials live")
    authority.add_argument("--mesh-id", default="", help="the mesh's id (default: a new one)")
    authority.add_argument("--mesh-name", default="", help="a name for the mesh")
    authority.add_argument("--node", required=True, help="this box's node name")
    authority.add_argument(
        "--host", required=True, help="the address other boxes reach this box on"
    )
    authority.add_argument("--port", type=int, default=9339, help="the door's port (9339)")
    authority.add_argument("--etcd", required=True, metavar="HOST:PORT", help="etcd, from here")
    authority.add_argument(
        "--etcd-public",
        required=True,
        metavar="HOST:PORT",
        help="etcd as other boxes reach it (what invite tokens name)",
    )
    authority.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..containers import DeployError, run_authority

    try:
        return asyncio.run(
            run_authority(
                Path(args.dir),
                mesh_id=args.mesh_id,
                node=args.node,
                host=args.host,
                port=args.port,
                etcd=args.etcd,
                etcd_public=args.etcd_public,
                mesh_name=args.mesh_name,
            )
        )
    except DeployError as exc:
        return fail(str(exc))
