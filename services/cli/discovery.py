"""Finding meshes on the local network with mDNS / DNS-SD (the `zeroconf` library).

A published mesh is announced as `<name>._meshllm._tcp.local.` by each of its nodes, with TXT
properties: format version, mesh name and id, node and model counts, and an invite token cut
into TXT strings of at most 200 characters (`t0`, `t1`, …: a TXT string holds 255 bytes at
most). Publishing a mesh means anyone on the network may join it. A private mesh announces
nothing. Announcements only say a mesh exists; whether its nodes are alive is the mesh's own
business (etcd leases): a killed announcer can linger in caches for minutes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

logger = logging.getLogger(__name__)
SERVICE_TYPE = "_meshllm._tcp.local."
TXT_VERSION = "2"
CHUNK = 200


@dataclass(frozen=True)
class MeshInfo:
    name: str
    mesh_id: str
    nodes: int
    models: int
    token: str
    announced_by: str  # node name
    address: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _text(properties: dict[bytes, bytes | None], key: str) -> str:
    value = properties.get(key.encode())
    return value.decode(errors="replace") if value else ""


def _chunks(properties: dict[bytes, bytes | None]) -> int:
    count = 0
    while f"t{count}".encode() in properties:
        count += 1
    return count


def mesh_from_info(info: AsyncServiceInfo) -> MeshInfo | None:
    props = info.properties or {}
    token = "".join(_text(props, f"t{i}") for i in range(_chunks(props)))
    if _text(props, "v") != TXT_VERSION or not token:
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only)
    try:
        nodes, models = int(_text(props, "nodes") or 0), int(_text(props, "models") or 0)
    except ValueError:
        return None
    return MeshInfo(
        name=_text(props, "name"),
        mesh_id=_text(props, "mesh"),
        nodes=nodes,
        models=models,
        token=token,
        announced_by=_text(props, "node"),
        address=addresses[0] if addresses else "",
    )


class Announcer:
    """Announces this node's mesh until stopped; `update` refreshes the counts."""

    def __init__(
        self, interface: str, mesh_name: str, mesh_id: str, node: str, token: str, port: int
    ) -> None:
        self._zeroconf = AsyncZeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
        self._interface = interface
        self._port = port
        self._base = {
            "v": TXT_VERSION,
            "name": mesh_name,
            "mesh": mesh_id,
            "node": node,
            **{f"t{i}": token[at : at + CHUNK] for i, at in enumerate(range(0, len(token), CHUNK))},
        }
        label = f"{mesh_name or mesh_id} on {node}"[:60]
        self._server = f"meshllm-{node}.local."
        self._info = self._service_info(f"{label}.{SERVICE_TYPE}", 0, 0)
        self._registered = False

    def _service_info(self, name: str, nodes: int, models: int) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            name,
            port=self._port,
            server=self._server,
            parsed_addresses=[self._interface],
            properties={**self._base, "nodes": str(nodes), "models": str(models)},
        )

    async def start(self) -> None:
        await self._zeroconf.async_register_service(self._info, allow_name_change=True)
        self._registered = True

    async def update(self, nodes: int, models: int) -> None:
        fresh = self._service_info(self._info.name, nodes, models)  # the name may have changed
        if fresh.properties != self._info.properties:
            self._info = fresh
            await self._zeroconf.async_update_service(self._info)

    async def stop(self) -> None:
        if self._registered:
            await self._zeroconf.async_unregister_service(self._info)
            self._registered = False
        await self._zeroconf.async_close()


async def discover(interface: str, timeout_s: float = 3.0) -> list[MeshInfo]:
    """Meshes announced on the network of `interface` within `timeout_s`, one per mesh id
    (the announcement with the most nodes wins)."""
    zeroconf = AsyncZeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
    names: set[str] = set()

    def on_change(
        zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        await asyncio.sleep(timeout_s)
        found: dict[str, MeshInfo] = {}
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(zeroconf.zeroconf, 1500):
                continue
            mesh = mesh_from_info(info)
            if mesh is not None and (
                mesh.mesh_id not in found or mesh.nodes > found[mesh.mesh_id].nodes
            ):
                found[mesh.mesh_id] = mesh
        return sorted(found.values(), key=lambda m: (-m.nodes, m.name))
    finally:
        await browser.async_cancel()
        await zeroconf.async_close()
