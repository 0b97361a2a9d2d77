"""Running a service: one asyncio loop, a set of components, ordered shutdown.

A component has `async run()` (returns when asked to stop) and an idempotent `async stop()`.
`run_service` runs every component in a TaskGroup; SIGTERM/SIGINT only set an Event. When the
Event is set, or a component crashes, components are stopped in reverse start order within
`grace_s`; whatever is still running is then cancelled, and a crash is re-raised so the
process exits non-zero and its supervisor (the CLI, compose, Kubernetes) notices.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Sequence
from typing import Protocol

import grpc
import uvicorn

from .errors import PortTaken
from .httpserver import HEADER_TIMEOUT_S, BoundedHttpProtocol, ErrorShield
from .pki import Credentials
from .ports import bindable

logger = logging.getLogger(__name__)


class Component(Protocol):
    async def run(self) -> None: ...

    async def stop(self) -> None: ...


async def run_service(
    name: str,
    components: Sequence[Component],
    *,
    grace_s: float,
    stop_event: asyncio.Event | None = None,
) -> None:
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    failures: list[BaseException] = []

    async def guarded(component: Component) -> None:
        try:
            await component.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("%s: component %s crashed", name, type(component).__name__)
            failures.append(exc)
            stop.set()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(guarded(c)) for c in components]
            await stop.wait()
            logger.info("%s stopping", name)
            await _stop_all(components, grace_s)
            await _finish(tasks, grace_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if failures:
        raise failures[0]


async def _stop_all(components: Sequence[Component], grace_s: float) -> None:
    try:
        async with asyncio.timeout(grace_s):
            for component in reversed(components):
                try:
                    await component.stop()
                except Exception:
                    logger.exception("stopping %s failed", type(component).__name__)
    except TimeoutError:
        logger.warning("components did not stop within %.1fs; cancelling", grace_s)


async def _finish(tasks: list[asyncio.Task[None]], grace_s: float) -> None:
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()


class EmbeddedUvicorn:
    """uvicorn inside our loop, with our signal handling (its own would replace ours), the
    limits of core.httpserver and every unexpected error answered as JSON."""

    class _Server(uvicorn.Server):
        def capture_signals(self):  # type: ignore[override]
            return contextlib.nullcontext()

    def __init__(
        self,
        app: object,
        host: str,
        port: int,
        *,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        tls: Credentials | None = None,
        **options: object,
    ) -> None:
        """With `tls`, HTTPS that requires a client certificate from the mesh's CA; the app
        finds the peer's certificate in the scope (core/httpserver.py)."""
        if tls is not None:
            options = {
                **options,
                "ssl_certfile": str(tls.cert_path),
                "ssl_keyfile": str(tls.key_path),
                "ssl_ca_certs": str(tls.ca_path),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
            }
        protocol = type(
            "HttpProtocol", (BoundedHttpProtocol,), {"header_timeout_s": header_timeout_s}
        )
        config = uvicorn.Config(
            ErrorShield(app),
            http=protocol,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            **options,  # type: ignore[arg-type]
        )
        self.server = self._Server(config)

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    async def run(self) -> None:
        try:
            await self.server.serve()
        except SystemExit as exc:  # uvicorn exits the process when it cannot bind
            raise self._cannot_listen() from exc
        if not self.server.started and not self.server.should_exit:
            raise self._cannot_listen()

    def _cannot_listen(self) -> Exception:
        host, port = self.server.config.host, self.server.config.port
        if not bindable(host, port):
            return PortTaken(f"cannot listen for HTTP on {host}:{port}: the port is taken")
        return RuntimeError(f"HTTP server could not listen on {host}:{port}")

    async def stop(self) -> None:
        self.server.should_exit = True


class GrpcServer:
    """A started grpc.aio server as a component; stop() lets in-flight RPCs finish."""

    def __init__(self, server: grpc.aio.Server, grace_s: float = 2.0) -> None:
        self.server = server
        self._grace_s = grace_s
        self._stopped = False

    async def run(self) -> None:
        await self.server.wait_for_termination()

    async def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            await self.server.stop(self._grace_s)


class LoopComponent(abc.ABC):
    """A component whose work is one long coroutine, `loop()`; stop() cancels it."""

    _task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def loop(self) -> None: ...

    async def run(self) -> None:
        self._task = asyncio.current_task()
        with contextlib.suppress(asyncio.CancelledError):
            await self.loop()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class Closer(LoopComponent):
    """Holds a resource with `async close()` (an HTTP client session) until shutdown."""

    def __init__(self, resource: object) -> None:
        self._resource = resource

    async def loop(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        await super().stop()
        await self._resource.close()  # type: ignore[attr-defined]
