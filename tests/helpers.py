"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from meshllm.core import keys, pki
from meshllm.core.clients import RegistryClient
from meshllm.core.grpc import make_server
from meshllm.core.pki import Credentials
from meshllm.core.ports import free_port
from meshllm.core.process import ChildProcess, process_table
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.proto.mesh.v1 import registry_pb2_grpc
from meshllm.core.store import EtcdStore, LeaseKeeper
from meshllm.registry.servicer import RegistryServicer
from meshllm.registry.settings import RegistrySettings
from meshllm.worker.llama_server import InstanceSpec, build_argv


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class LlamaServer:
    def __init__(
        self,
        binary: str,
        model: Path,
        *,
        context: int,
        parallel: int,
        threads: int = 0,
        mmproj: Path | None = None,
    ) -> None:
        self.port = free_port()
        spec = InstanceSpec(
            instance_id="test",
            model="tiny",
            model_path=str(model),
            context=context,
            mmproj_path=str(mmproj) if mmproj is not None else "",
            parallel=parallel,
            threads=threads,
        )
        self.process = ChildProcess("llama-server", build_argv(binary, spec, self.port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.process.start()
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{self.url}/health") as reply:
                        if reply.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"llama-server did not start: {self.process.last_output()}")

    async def busy_slots(self) -> int:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/slots") as reply:
            return sum(1 for slot in await reply.json() if slot["is_processing"])

    async def tokens_predicted(self) -> int:
        """Tokens generated so far, those of cancelled requests included (its /metrics)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as reply:
            for line in (await reply.text()).splitlines():
                if line.startswith("llamacpp:tokens_predicted_total "):
                    return int(float(line.split()[1]))
        raise AssertionError("llama-server exported no tokens_predicted_total")


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its command line."""
    live = [p for p in process_table().values() if p.state != "Z"]
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child in live:
            if child.ppid == parent and child.pid not in found:
                found[child.pid] = child.command
                frontier.append(child.pid)
    return found


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, an identity that a
    recycled pid does not share. None when no such process exists."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, started: int | None = None) -> bool:
    """The process runs (a zombie has ended) and, if `started` is given, is the same process
    that started then, not a newcomer given its recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and (started is None or int(fields[19]) == started)


def cannot_run_here(reason: str) -> None:
    """A suite that needs what this machine lacks (root, a container engine) skips on a
    developer's machine, but fails in CI, which must run every suite: a skip there would
    hide a missing install step."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run this suite: install what it needs in .ci/run)")
    pytest.skip(reason)


def issue_credentials(directory: Path, ca: tuple, node: str, role: str = "node") -> Credentials:
    """A node's credentials from the CA `ca` (key, certificate), saved in `directory`."""
    ca_key, ca_cert = ca
    key = pki.new_key()
    cert = pki.issue(ca_key, ca_cert, key.public_key(), node=node, role=role)
    credentials = Credentials(directory)
    credentials.save(ca_cert, cert, key)
    return credentials


async def publish_endpoint(
    store: EtcdStore,
    mesh: str,
    model: str,
    instance: str,
    url: str,
    node: str = "node-a",
    worker_id: str = "w0",
) -> None:
    """An endpoint as a worker publishes it: its worker's record first (a gateway routes
    only to endpoints whose worker is registered, on that worker's relay and address)."""
    host = url.split("//", 1)[1].rsplit(":", 1)[0]
    await store.put(
        keys.worker(mesh, node, worker_id),
        pb.WorkerRecord(node=node, worker_id=worker_id, relay_url=url, grpc_address=f"{host}:1"),
    )
    await store.put(
        keys.endpoint(mesh, model, instance),
        pb.Endpoint(
            model=model,
            instance_id=instance,
            node=node,
            worker_id=worker_id,
            local_url=url,
            relay_url=url,
        ),
    )


@dataclass
class RunningRegistry:
    client: RegistryClient
    address: str
    servicer: RegistryServicer


@asynccontextmanager
async def running_registry(
    store: EtcdStore, settings: RegistrySettings
) -> AsyncIterator[RunningRegistry]:
    """A real registry gRPC server on a free loopback port, with its lease, stopped after."""
    lease = LeaseKeeper(store, ttl_s=5)
    await lease.start()
    servicer = RegistryServicer(settings, store, lease)
    server, _, port = make_server(
        "127.0.0.1:0",
        lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s),
    )
    await server.start()
    try:
        async with RegistryClient(f"127.0.0.1:{port}") as client:
            yield RunningRegistry(client, f"127.0.0.1:{port}", servicer)
    finally:
        await server.stop(0)
        await lease.stop()


def png(width: int, height: int) -> bytes:
    """An 8-bit RGB gradient as a PNG (no Pillow here): each row is filter byte 0, then pixels."""
    rows = (
        b"\x00" + b"".join(bytes((x * 5 % 256, y * 7 % 256, 128)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(b"".join(rows))),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@dataclass
class RunningConsole:
    url: str  # http://127.0.0.1:PORT, a real uvicorn (event streams are not buffered)
    app: object  # the ASGI app itself, for an in-process transport
    store: EtcdStore


@asynccontextmanager
async def running_console(
    store: EtcdStore, mesh: str, here: object
) -> AsyncIterator[RunningConsole]:
    """The gateway's console (its API and page) for `mesh`, as `here` (a console.status.Here),
    with its watch-fed view, event feed and lease, stopped after."""
    from meshllm.core.lifecycle import EmbeddedUvicorn
    from meshllm.gateway.console.app import ConsoleView, create_console
    from meshllm.gateway.endpoints import EndpointTable

    view = ConsoleView(store, mesh, EndpointTable(store, mesh))
    lease = LeaseKeeper(store, ttl_s=5)
    await lease.start()
    async with aiohttp.ClientSession() as local:
        app, feed = create_console(view, here, store, lease, None, lambda: local, None)  # type: ignore[arg-type]
        port = free_port()
        server = EmbeddedUvicorn(app, "127.0.0.1", port)
        parts = [lease, feed, *view.watched]  # the lease revoked before the watches stop
        tasks = [asyncio.create_task(p.run()) for p in parts]
        tasks.append(asyncio.create_task(server.run()))
        try:
            await asyncio.gather(*(c.ready.wait() for c in view.watched))
            await eventually(lambda: server.started)
            yield RunningConsole(f"http://127.0.0.1:{port}", app, store)
        finally:
            await server.stop()
            for part in parts:
                await part.stop()
            await asyncio.gather(*tasks)
