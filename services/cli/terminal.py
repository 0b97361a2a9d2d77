"""What `serve` tells its user: lines for people, JSON events (`--json`) for scripts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from meshllm.core import pki

from .membership import MeshAccess
from .serve_options import ServeOptions


class Console:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, text: str, **event: object) -> None:
        if self.as_json:
            if event:
                print(json.dumps(event), flush=True)
        else:
            print(text, flush=True)


def announce_ready(console: Console, log_dir: Path, opts: ServeOptions, access: MeshAccess) -> None:
    api = f"http://localhost:{opts.port}/v1"
    role = "API client" if opts.client_only else "serving node"
    if not opts.client_only and not opts.models:
        role = "standby node"
    lines = [
        f"\nMesh LLM is up ({role} {access.node} in mesh {access.mesh_name or access.mesh_id}).",
        f"  API:     {api}",
    ]
    if role == "standby node":
        lines.append("  models:  none of its own; it serves what the mesh's requests ask for")
    if opts.console_port:
        lines.append(f"  console: http://localhost:{opts.console_port}")
    lines.append(f"  logs:    {log_dir}")
    node_token, client_token = access.invites.get(pki.NODE), access.invites.get(pki.CLIENT)
    if node_token is not None and client_token is not None:
        lines += [
            "",
            "Add machines to this mesh (these invites expire in 24 h; mint more with "
            "`mesh-llm invite`):",
            f"  mesh-llm serve --join {node_token.encode()}",
            f"  mesh-llm client --join {client_token.encode()}    (API only)",
            "An invite lets its holder join the mesh: share it like a password.",
        ]
    console.say(
        "\n".join(lines),
        event="ready",
        api=api,
        mesh=access.mesh_id,
        node=access.node,
        role=access.role,
        token=node_token.encode() if node_token else "",
        client_token=client_token.encode() if client_token else "",
        console=f"http://localhost:{opts.console_port}",
        logs=str(log_dir),
        credentials=str(access.credentials),
    )


async def announce_models(
    api: str, names: list[str], console: Console, keys: tuple[str, ...] = ()
) -> None:
    pending = set(names)
    started = time.monotonic()
    headers = {"authorization": f"Bearer {keys[0]}"} if keys else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        while pending:
            try:
                async with http.get(f"{api}/v1/models") as reply:
                    served = {m["id"] for m in (await reply.json())["data"]}
            except (aiohttp.ClientError, ValueError, KeyError):
                served = set()
            for name in sorted(pending & served):
                console.say(
                    f"model {name} is ready ({time.monotonic() - started:.1f}s)",
                    event="model_ready",
                    model=name,
                )
            pending -= served
            await asyncio.sleep(0.25)
