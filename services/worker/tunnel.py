"""The RPC tunnel between a split's host and its peers.

llama.cpp's `rpc-server` speaks an unauthenticated protocol and serves one host at a time with
no timeouts, so it listens on loopback only; other nodes reach it through this tunnel, run by
the workers:

    host's llama-server --rpc 127.0.0.1:L ──▶ TunnelClient (host's worker, loopback port L)
        ══ mutual TLS, node certificates ══▶ TunnelServer (peer's worker, tunnel_port)
        ──▶ rpc-server on the peer's loopback

A connection opens with one line naming the peer's instance (`<instance id>\\n`); the server
answers `ok\\n` or `error <why>\\n`, then bytes flow both ways untouched, with TCP_NODELAY on
every socket (RPC is a chain of small round trips). A first line `ping` is answered `pong`:
the RTT probe's round trip. The server takes only a serving node of the mesh, only the host
its assignment names, and one connection per rpc-server at a time.
Without credentials (a development node on loopback) the tunnel is plain TCP on loopback.

The client watches each connection: the peer closing it, or a request the peer leaves
unanswered for `stall_s` while nothing more can be sent (a frozen or cut-off peer blocks
llama-server forever), is reported through `on_lost` so the worker stops its llama-server
rather than leaving a hung endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Container
from dataclasses import dataclass

from meshllm.core import access
from meshllm.core.grpc import SERVER_NAME
from meshllm.core.pki import Credentials, Identity

logger = logging.getLogger(__name__)
CHUNK = 256 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
BUSY_WAIT_S = 5.0  # a host reconnecting waits this long for its previous connection to end
PING = "ping"


@dataclass(frozen=True)
class Route:
    port: int  # the rpc-server's loopback port
    host_node: str  # the only node whose llama-server may drive it


@dataclass
class Traffic:
    """What went through one TunnelClient, each way."""

    to_peer: int = 0
    from_peer: int = 0
    round_trips: int = 0  # times the peer answered after the host had sent something


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


class TunnelServer:
    """The peer's side: one listener for every rpc-server of this worker."""

    def __init__(
        self,
        route: Callable[[str], Route | None],
        credentials: Credentials | None,
        *,
        mesh_id: str,
        revoked: Container[int],
    ) -> None:
        self._route = route
        self._credentials = credentials
        self._mesh_id = mesh_id
        self._revoked = revoked
        self._busy: dict[str, asyncio.Lock] = {}
        self._holder: dict[str, str] = {}
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen (the caller checks first that `host` may be listened on without
        credentials: access.check_exposure)."""
        ssl = self._credentials.server_context() if self._credentials else None
        self._server = await asyncio.start_server(self._accept, host, port, ssl=ssl)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)
        except (TimeoutError, OSError, ValueError):
            await _close(writer)
            return
        instance_id = line.decode(errors="replace").strip()
        if instance_id == PING:  # the RTT probe: one round trip on an open connection
            writer.write(b"pong\n")
            await _close(writer)
            return
        refusal, route, node = self._check(instance_id, writer)
        if refusal is not None:
            logger.warning("RPC tunnel refused %s for %s: %s", node or "?", instance_id, refusal)
            writer.write(f"error {refusal}\n".encode())
            await _close(writer)
            return
        assert route is not None
        lock = self._busy.setdefault(instance_id, asyncio.Lock())
        holder = self._holder.get(instance_id)
        if lock.locked() and holder != node:
            writer.write(f"error rpc-server {instance_id} already serves {holder}\n".encode())
            await _close(writer)
            return
        try:
            await asyncio.wait_for(lock.acquire(), BUSY_WAIT_S)
        except TimeoutError:
            writer.write(f"error rpc-server {instance_id} is busy\n".encode())
            await _close(writer)
            return
        self._holder[instance_id] = node
        try:
            await self._pipe_to(route.port, instance_id, reader, writer)
        finally:
            lock.release()

    async def _pipe_to(
        self,
        port: int,
        instance_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            writer.write(f"error rpc-server {instance_id} does not answer: {exc}\n".encode())
            await _close(writer)
            return
        _nodelay(up_writer)
        writer.write(b"ok\n")
        await _join(_copy(reader, up_writer), _copy(up_reader, writer))
        await _close(up_writer)
        await _close(writer)

    def _peer_identity(self, writer: asyncio.StreamWriter) -> Identity | None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return access.cert_identity(ssl.DER_cert_to_PEM_cert(der)) if der else None

    def _check(
        self, instance_id: str, writer: asyncio.StreamWriter
    ) -> tuple[str | None, Route | None, str]:
        """(why not, or None; the route; the connecting node)."""
        node = ""
        if self._credentials is not None:
            identity = self._peer_identity(writer)
            refusal = access.refusal(
                identity, mesh_id=self._mesh_id, allowed=access.SERVING, revoked=self._revoked
            )
            if refusal is not None:
                return refusal, None, ""
            assert identity is not None
            node = identity.node
        route = self._route(instance_id)
        if route is None:
            return f"no rpc-server {instance_id!r} is ready on this worker", None, node
        if self._credentials is not None and node != route.host_node:
            return f"rpc-server {instance_id} serves only its host {route.host_node}", None, node
        return None, route, node


async def _copy(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    count: Callable[[int], None] | None = None,
    on_written: Callable[[], None] | None = None,
    on_read: Callable[[], None] | None = None,
) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if on_read is not None:
                on_read()
            writer.write(data)
            await writer.drain()
            if count is not None:
                count(len(data))
            if on_written is not None:
                on_written()
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


async def _join(*copies: object) -> None:
    """Run both directions until either ends, then stop the other."""
    tasks = [asyncio.ensure_future(c) for c in copies]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class TunnelClient:
    """The host's side for one peer: a loopback port for llama-server's `--rpc`, each
    connection to it carried to the peer's tunnel."""

    def __init__(
        self,
        target: str,
        instance_id: str,
        credentials: Credentials | None,
        *,
        stall_s: float,
        on_lost: Callable[[str], None],
    ) -> None:
        self.target = target  # host:port of the peer's tunnel
        self.instance_id = instance_id
        self._credentials = credentials
        self._stall_s = stall_s
        self._on_lost = on_lost
        self._server: asyncio.Server | None = None
        self.traffic = Traffic()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, _, port = self.target.rpartition(":")
        ssl_context = self._credentials.client_context() if self._credentials else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                int(port),
                ssl=ssl_context,
                server_hostname=SERVER_NAME if ssl_context else None,
            ),
            HANDSHAKE_TIMEOUT_S,
        )
        _nodelay(writer)
        writer.write(f"{self.instance_id}\n".encode())
        answer = (await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)).decode().strip()
        if answer != "ok":
            await _close(writer)
            raise ConnectionError(answer.removeprefix("error ") or "the tunnel closed")
        return reader, writer

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        try:
            peer_reader, peer_writer = await self._open()
        except (OSError, TimeoutError, ConnectionError) as exc:
            await _close(writer)
            self._on_lost(f"cannot reach rpc-server {self.instance_id} at {self.target}: {exc}")
            return
        clock = _Clock(self.traffic)

        def to_peer(n: int) -> None:
            self.traffic.to_peer += n

        def from_peer(n: int) -> None:
            self.traffic.from_peer += n

        local = asyncio.ensure_future(_copy(reader, peer_writer, to_peer, clock.sent))
        remote = asyncio.ensure_future(_copy(peer_reader, writer, from_peer, None, clock.heard))
        watchdog = asyncio.ensure_future(clock.stalled(self._stall_s))
        try:
            done, _ = await asyncio.wait(
                {local, remote, watchdog}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (local, remote, watchdog):
                task.cancel()
            await asyncio.gather(local, remote, watchdog, return_exceptions=True)
            await _close(peer_writer)
            await _close(writer)
        if watchdog in done:
            self._on_lost(
                f"rpc-server {self.instance_id} left a request unanswered for {self._stall_s:.0f}s"
            )
        elif remote in done and local not in done:
            self._on_lost(f"rpc-server {self.instance_id} at {self.target} closed the connection")


class _Clock:
    """When bytes last went to the peer (a write completed) and last came back."""

    def __init__(self, traffic: Traffic) -> None:
        self.sent_at = 0.0
        self.heard_at = 0.0
        self._traffic = traffic

    def sent(self) -> None:
        self.sent_at = time.monotonic()

    def heard(self) -> None:
        if self.sent_at > self.heard_at:
            self._traffic.round_trips += 1
        self.heard_at = time.monotonic()

    async def stalled(self, stall_s: float) -> None:
        """Returns once the peer owes an answer (something was sent after it last spoke) and
        nothing has gone out or come back for `stall_s`: uploads that keep flowing and long
        computations answered in time never trip it."""
        while True:
            await asyncio.sleep(min(0.5, stall_s / 4))
            waiting = self.sent_at > self.heard_at
            if waiting and time.monotonic() - self.sent_at > stall_s:
                return


async def ping_ms(
    address: str, credentials: Credentials | None, timeout_s: float = 2.0
) -> float | None:
    """One `ping` round trip to a worker's tunnel, in ms, timed on an open connection (the
    TCP and TLS handshakes are not counted); None when it does not answer in time."""
    host, _, port = address.rpartition(":")
    ssl_context = credentials.client_context() if credentials else None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                host,
                int(port),
                ssl=ssl_context,
                server_hostname=SERVER_NAME if ssl_context else None,
            )
            _nodelay(writer)
            try:
                start = time.perf_counter()
                writer.write(f"{PING}\n".encode())
                answer = await reader.readline()
                elapsed = (time.perf_counter() - start) * 1000
            finally:
                await _close(writer)
    except (OSError, TimeoutError, ValueError):
        return None
    return elapsed if answer.strip() == b"pong" else None
