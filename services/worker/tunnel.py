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
import errno
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from typing import cast

from meshllm.core import access
from meshllm.core.errors import PortTaken
from meshllm.core.grpc import SERVER_NAME
from meshllm.core.pki import Credentials, Identity

logger = logging.getLogger(__name__)
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


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
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
        try:
            self._server = await asyncio.start_server(self._accept, host, port, ssl=ssl)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortTaken(f"cannot listen for the tunnel on {host}:{port}: taken") from exc
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer.transport)
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
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        down = _Pipe(done, "host")
        try:
            upstream, up = await loop.create_connection(
                lambda: _Pipe(done, "rpc-server"), "127.0.0.1", port
            )
        except OSError as exc:
            writer.write(f"error rpc-server {instance_id} does not answer: {exc}\n".encode())
            await _close(writer)
            return
        _nodelay(upstream)
        writer.write(b"ok\n")
        # the host sends nothing before `ok`: nothing is left in `reader` to carry over
        _splice(writer.transport, down, upstream, up)  # type: ignore[arg-type]
        try:
            await done
        finally:
            upstream.close()
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


class _Pipe(asyncio.Protocol):
    """One side of two spliced connections: what arrives on its transport is written straight
    to the other's (no task or buffer between them: the latency a relay adds is what RPC pays
    several times per token), and when the other's writes back up, this side stops reading.
    Either side closing settles `done` with its name."""

    def __init__(
        self, done: asyncio.Future[str], name: str, on_data: Callable[[int], None] | None = None
    ) -> None:
        self.done = done
        self.name = name
        self.on_data = on_data
        self.transport: asyncio.Transport | None = None
        self.other: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # what arrived before the other side was joined

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(len(data))
        if self.other is None:
            self.pending.append(data)
        else:
            self.other.write(data)

    def eof_received(self) -> bool:
        return False  # RPC never half-closes: close, and the splice ends

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.name)

    def pause_writing(self) -> None:  # our transport is full: stop feeding it
        if self.other is not None:
            self.other.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None:
            self.other.resume_reading()


def _splice(a: asyncio.Transport, a_pipe: _Pipe, b: asyncio.Transport, b_pipe: _Pipe) -> None:
    """Join two connections through their pipes. A transport taken over from a stream must
    have nothing unread in its reader; what a pipe received before the join is sent on."""
    for transport, pipe, other in ((a, a_pipe, b), (b, b_pipe, a)):
        transport.set_protocol(pipe)
        pipe.transport, pipe.other = transport, other
    for pipe in (a_pipe, b_pipe):
        assert pipe.other is not None
        for data in pipe.pending:
            pipe.other.write(data)
        pipe.pending.clear()
    for transport, pipe in ((a, a_pipe), (b, b_pipe)):
        if transport.is_closing():
            pipe.connection_lost(None)


class _HeldPipe(_Pipe):
    """llama-server's side of a TunnelClient connection: what it sends is held in `pending`
    (its first message, then it waits for an answer) until the tunnel behind it is open and
    spliced on by `carry`."""

    def __init__(self, carry: Callable[[_Pipe], Awaitable[None]]) -> None:
        super().__init__(asyncio.get_running_loop().create_future(), "llama-server")
        self._carry = carry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        _nodelay(transport)
        task = asyncio.ensure_future(self._carry(self))
        _CARRYING.add(task)
        task.add_done_callback(_CARRYING.discard)


_CARRYING: set[asyncio.Future[None]] = set()  # running carries, kept from the collector


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
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HeldPipe(self._carry), "127.0.0.1", 0)
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
        _nodelay(writer.transport)
        writer.write(f"{self.instance_id}\n".encode())
        answer = (await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)).decode().strip()
        if answer != "ok":
            await _close(writer)
            raise ConnectionError(answer.removeprefix("error ") or "the tunnel closed")
        return reader, writer

    async def _carry(self, held: _Pipe) -> None:
        local = held.transport
        assert local is not None
        try:
            _, peer_writer = await self._open()
        except (OSError, TimeoutError, ConnectionError) as exc:
            local.close()
            self._on_lost(f"cannot reach rpc-server {self.instance_id} at {self.target}: {exc}")
            return
        clock = _Clock(self.traffic)

        def to_peer(n: int) -> None:
            self.traffic.to_peer += n
            clock.sent()

        def from_peer(n: int) -> None:
            self.traffic.from_peer += n
            clock.heard()

        for data in held.pending:
            to_peer(len(data))
        held.on_data = to_peer
        done = held.done
        # the peer says nothing after `ok` until asked: nothing is left in its reader
        peer = _Pipe(done, "peer", from_peer)
        _splice(local, held, peer_writer.transport, peer)  # type: ignore[arg-type]
        watchdog = asyncio.ensure_future(clock.stalled(self._stall_s))
        ended = "stall"
        try:
            await asyncio.wait({done, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            ended = done.result() if done.done() else "stall"
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            local.close()
            await _close(peer_writer)
        if ended == "stall":
            self._on_lost(
                f"rpc-server {self.instance_id} left a request unanswered for {self._stall_s:.0f}s"
            )
        elif ended == "peer":
            self._on_lost(f"rpc-server {self.instance_id} at {self.target} closed the connection")


class _Clock:
    """When bytes last went toward the peer and last came back."""

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
            _nodelay(writer.transport)
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
