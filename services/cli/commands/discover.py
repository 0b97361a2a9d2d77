"""`mesh-llm discover`: the meshes announced on the local network (mDNS)."""

from __future__ import annotations

import argparse
import asyncio

from .common import Subcommands, fail


def add_parser(commands: Subcommands) -> None:
    discover = commands.add_parser(
        "discover",
        help="list the meshes announced on the local network",
        description="Browse mDNS for published meshes (private meshes are never announced; "
        "there is no internet-wide directory).",
    )
    discover.add_argument(
        "--interface",
        default="",
        metavar="ADDR",
        help="the local address whose network to search (default: the default route's interface)",
    )
    discover.add_argument("--timeout", type=float, default=3.0, help="seconds to listen")
    discover.add_argument("--json", action="store_true", help="print JSON lines")
    discover.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..discovery import discover
    from ..network import lan_address

    interface = args.interface or lan_address()
    try:
        meshes = asyncio.run(discover(interface, args.timeout))
    except OSError as exc:
        return fail(f"cannot listen for mDNS on {interface}: {exc.strerror or exc}")
    if args.json:
        for mesh in meshes:
            print(mesh.to_json())
    elif not meshes:
        print(f"no published mesh seen from {interface} in {args.timeout:.0f}s")
    else:
        print(f"{'MESH':<24} {'NODES':>5} {'MODELS':>6}  ANNOUNCED BY")
        for mesh in meshes:
            print(
                f"{mesh.name or mesh.mesh_id:<24} {mesh.nodes:>5} {mesh.models:>6}  "
                f"{mesh.announced_by} ({mesh.address})"
            )
        print("join one with: mesh-llm serve --auto   or   mesh-llm client --auto")
    return 0
