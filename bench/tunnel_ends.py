"""The two ends of the mesh's RPC tunnel, each in its own process as on real nodes (the host's
worker runs the client, the peer's worker the server), for the benchmarks to put in front of
a loopback service:

    python bench/tunnel_ends.py server CREDENTIALS_DIR TARGET_PORT LISTEN_PORT MESH_ID [--loop L]
    python bench/tunnel_ends.py client CREDENTIALS_DIR SERVER_PORT ROUTE [--loop L]

The server routes ROUTE (the client's instance id; the server's is "route") to TARGET_PORT for
the node "host". The client prints its loopback port, then answers every line on its stdin
with its traffic counters as one JSON line. `--loop uvloop` runs the process on uvloop.
`TunnelEnds` starts both and reads the counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from meshllm.core.pki import Credentials
from meshllm.worker.tunnel import Route, TunnelClient, TunnelServer

ROUTE = "route"


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class TunnelEnds:
    """A tunnel server process in front of `target_port` and a client process in front of
    that; `port` is where the host's llama-server (or a ping) connects."""

    def __init__(self, host: Credentials, peer: Credentials, mesh_id: str, loop: str) -> None:
        self.host, self.peer, self.mesh_id, self.loop = host, peer, mesh_id, loop
        self.processes: list[subprocess.Popen[str]] = []
        self.port = 0

    def start(self, target_port: int, server_port: int) -> int:
        me = [sys.executable, __file__]
        argv = [str(self.peer.directory), str(target_port), str(server_port), self.mesh_id]
        self.processes.append(subprocess.Popen([*me, "server", *argv, "--loop", self.loop]))
        wait_port(server_port)
        client = subprocess.Popen(
            [*me, "client", str(self.host.directory), str(server_port), ROUTE, "--loop", self.loop],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(client)
        assert client.stdout is not None
        self.port = int(client.stdout.readline())
        return self.port

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def traffic(self) -> dict[str, int]:
        client = self.processes[-1]
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write("traffic\n")
        client.stdin.flush()
        return dict(json.loads(client.stdout.readline()))

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


async def serve(args: argparse.Namespace) -> None:
    routes = {ROUTE: Route(args.target_port, "host")}
    server = TunnelServer(
        routes.get, Credentials(Path(args.credentials)), mesh_id=args.mesh, revoked=frozenset()
    )
    await server.start("127.0.0.1", args.listen_port)
    await asyncio.Event().wait()


async def carry(args: argparse.Namespace) -> None:
    client = TunnelClient(
        f"127.0.0.1:{args.server_port}",
        args.route,
        Credentials(Path(args.credentials)),
        stall_s=600,
        on_lost=lambda why: print(f"tunnel: {why}", file=sys.stderr),
    )
    print(await client.start(), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(json.dumps(asdict(client.traffic)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sides = parser.add_subparsers(dest="side", required=True)
    server = sides.add_parser("server")
    server.add_argument("credentials")
    server.add_argument("target_port", type=int)
    server.add_argument("listen_port", type=int)
    server.add_argument("mesh")
    client = sides.add_parser("client")
    client.add_argument("credentials")
    client.add_argument("server_port", type=int)
    client.add_argument("route")
    for side in (server, client):
        side.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    runner: Any = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    runner(serve(args) if args.side == "server" else carry(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
