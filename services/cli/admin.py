"""`mesh-llm invite`, `revoke` and `members`: the authority's calls, made with the
credentials of a node of the mesh."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

from meshllm.core import pki
from meshllm.core.errors import MeshError

from .enrol import AuthorityClient
from .local import running_nodes

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AdminError(Exception):
    """One line for the user."""


def parse_duration(text: str) -> float:
    """Seconds in '90s', '30m', '24h', '7d'; 0 for 'never'."""
    value = text.strip().lower()
    if value in ("never", "0"):
        return 0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value)
    if match is None or float(match.group(1)) <= 0:
        raise AdminError(f"--ttl {text!r}: give a duration such as 90s, 30m, 24h, 7d, or never")
    return float(match.group(1)) * UNITS[match.group(2)]


def credentials_dir(given: str) -> Path:
    """--credentials, else MESH_TLS_DIR, else the node running on this machine."""
    if given or os.environ.get("MESH_TLS_DIR"):
        return Path(given or os.environ["MESH_TLS_DIR"]).expanduser()
    nodes = running_nodes()
    meshes = {node.mesh_id for node in nodes}
    if not nodes:
        raise AdminError(
            "no mesh-llm node runs on this machine: start one (mesh-llm serve) or pass "
            "--credentials DIR"
        )
    if len(meshes) > 1:
        raise AdminError(
            f"nodes of {len(meshes)} meshes run here ({', '.join(sorted(meshes))}): choose one "
            "with --credentials DIR"
        )
    return Path(nodes[0].credentials)


def _client(given: str) -> AuthorityClient:
    try:
        return AuthorityClient(credentials_dir(given))
    except MeshError as exc:
        raise AdminError(exc.message) from exc


def _call(coroutine):  # type: ignore[no-untyped-def]
    try:
        return asyncio.run(coroutine)
    except MeshError as exc:
        raise AdminError(exc.message) from exc


def invite(given: str, ttl: str, uses: int, client_only: bool, as_json: bool) -> int:
    ttl_s = parse_duration(ttl)
    if uses == 0 or uses < -1:
        raise AdminError("--uses must be a positive number")
    authority = _client(given)
    role = pki.CLIENT if client_only else pki.NODE
    reply = _call(authority.invite(role, ttl_s, uses))
    if as_json:
        print(json.dumps({**reply, "role": role, "mesh_id": authority.membership.mesh_id}))
        return 0
    command = "client" if client_only else "serve"
    expires = reply.get("expires") or 0
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires)) if expires else "never"
    print(reply["token"])
    print(f"join with: mesh-llm {command} --join TOKEN (valid until {until})", file=sys.stderr)
    return 0


def revoke(given: str, node: str, as_json: bool) -> int:
    reply = _call(_client(given).revoke(node))
    print(json.dumps(reply) if as_json else f"revoked {node}: it can no longer reach the mesh")
    return 0


def members(given: str, as_json: bool) -> int:
    found = _call(_client(given).members())
    if as_json:
        print(json.dumps(found))
        return 0
    print(f"{'NODE':<24} {'ROLE':<9} JOINED")
    for member in found:
        joined = time.strftime("%Y-%m-%d %H:%M", time.localtime(member["issued"]))
        print(f"{member['node']:<24} {member['role']:<9} {joined}")
    return 0
