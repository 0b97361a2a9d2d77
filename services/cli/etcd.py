"""A private etcd for a node that was not given one (and for tests): the Debian `etcd`
binary, loopback ports, its own data directory."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import aiohttp

from meshllm.core.errors import Unavailable
from meshllm.core.process import ChildProcess

from .network import bind_address

INSTALL_HINT = (
    "etcd is not installed: install it (Debian/Ubuntu: apt-get install etcd-server) "
    "or point to a running etcd with --etcd HOST:PORT"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_etcd() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise Unavailable(INSTALL_HINT)
    return found


class EtcdServer:
    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        client_port: int = 0,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.client_port = client_port or free_port(bind_address(host))
        self.peer_port = free_port(host)
        self.data_dir = data_dir
        peer = f"http://{host}:{self.peer_port}"
        client = f"http://{host}:{self.client_port}"
        listen = f"http://{bind_address(host)}:{self.client_port}"
        self.process = ChildProcess(
            "etcd",
            [
                find_etcd(),
                "--name",
                "mesh",
                "--data-dir",
                str(data_dir),
                "--listen-client-urls",
                listen,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"mesh={peer}",
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-level",
                "error",
            ],
            log_path=log_path,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.process.start()
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not self.process.running:
                    raise Unavailable(f"etcd exited: {self.process.last_output()}")
                try:
                    async with http.get(f"http://{self.endpoint}/health") as reply:
                        if reply.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        await self.process.stop(2)
        raise Unavailable(f"etcd did not become healthy within {timeout_s:.0f}s")

    async def stop(self) -> None:
        await self.process.stop(5)
