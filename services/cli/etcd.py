"""A private etcd for a node that was not given one (and for tests): the Debian `etcd`
binary, its own data directory. With the mesh authority's files it takes only clients with a
certificate from the mesh's CA (mutual TLS, the certificate's CN as etcd user, the CRL read on
every new connection); it then listens on loopback until `expose()` adds the machine's own
address, which the mesh's first other member triggers."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from meshllm.core.errors import Unavailable
from meshllm.core.pki import SERVER_NAME, Credentials
from meshllm.core.ports import free_port
from meshllm.core.process import ChildProcess

from .network import bind_address

INSTALL_HINT = (
    "etcd is not installed: install it (Debian/Ubuntu: apt-get install etcd-server) "
    "or point to a running etcd with --etcd HOST:PORT"
)


def find_etcd() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise Unavailable(INSTALL_HINT)
    return found


@dataclass(frozen=True)
class EtcdTls:
    credentials: Credentials  # etcd's server certificate, and the CA its clients must have
    crl: Path


class EtcdServer:
    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        client_port: int = 0,
        log_path: Path | None = None,
        tls: EtcdTls | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.exposed = tls is None  # without TLS it listens where `host` says, as it always did
        self.client_port = client_port or free_port(bind_address(host))
        self.peer_port = free_port()  # one member, never more: its peer port stays on loopback
        self.data_dir = data_dir
        self.log_path = log_path
        self.process = self._child()

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def _child(self) -> ChildProcess:
        peer = f"http://127.0.0.1:{self.peer_port}"
        listen = {f"{self.scheme}://127.0.0.1:{self.client_port}"}
        if self.exposed:
            listen = {f"{self.scheme}://{bind_address(self.host)}:{self.client_port}"}
        argv = [
            find_etcd(),
            "--name",
            "mesh",
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            ",".join(sorted(listen)),
            "--advertise-client-urls",
            f"{self.scheme}://{self.host}:{self.client_port}",
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
        ]
        if self.tls is not None:
            argv += [
                "--cert-file",
                str(self.tls.credentials.cert_path),
                "--key-file",
                str(self.tls.credentials.key_path),
                "--trusted-ca-file",
                str(self.tls.credentials.ca_path),
                "--client-cert-auth",
                "--client-crl-file",
                str(self.tls.crl),
            ]
        return ChildProcess("etcd", argv, log_path=self.log_path)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def local_endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None and not self.tls.crl.exists():
            raise Unavailable(f"etcd's CRL file {self.tls.crl} is missing")
        await self.process.start()
        deadline = time.monotonic() + timeout_s
        context = self.tls.credentials.client_context() if self.tls else None
        url = f"{self.scheme}://{self.local_endpoint}/health"
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not self.process.running:
                    raise Unavailable(f"etcd exited: {self.process.last_output()}")
                if await _healthy(http, url, context):
                    return
                await asyncio.sleep(0.1)
        await self.process.stop(2)
        raise Unavailable(f"etcd did not become healthy within {timeout_s:.0f}s")

    async def expose(self) -> None:
        """Listen on the machine's address too (restarting etcd on the same data): the mesh
        now has members elsewhere."""
        if self.exposed:
            return
        self.exposed = True
        await self.process.stop(5)
        self.process = self._child()
        await self.start()

    async def stop(self) -> None:
        await self.process.stop(5)


async def _healthy(http: aiohttp.ClientSession, url: str, context: ssl.SSLContext | None) -> bool:
    options = {"ssl": context, "server_hostname": SERVER_NAME} if context else {}
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2), **options) as reply:
            return reply.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
