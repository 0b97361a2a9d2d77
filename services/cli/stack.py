"""The child processes of one `serve`: each service (and the mesh's own etcd) started,
waited on until ready, restarted with a growing delay when it dies (core/process.py's
`RestartBackoff`, as the worker restarts its llama-servers), and stopped newest first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from meshllm.core.config import BaseServiceSettings
from meshllm.core.errors import Unavailable
from meshllm.core.ports import PORT_TAKEN_EXIT
from meshllm.core.process import ChildProcess, RestartBackoff

from .etcd import EtcdServer
from .serve_options import ServeError, ServeOptions
from .terminal import Console

SettingsT = TypeVar("SettingsT", bound=BaseServiceSettings)
PORT_ATTEMPTS = 3  # starts of a service whose ports keep being taken before serve gives up


def service_env(settings: BaseServiceSettings) -> dict[str, str]:
    return {**os.environ, **settings.to_env()}


def service_backoff() -> RestartBackoff:
    """0.5 s, 1 s, 2 s …; five exits within a minute take the whole stack down."""
    return RestartBackoff(first_s=0.5, max_s=8.0, stable_after_s=60.0, give_up_after=5)


@dataclass
class Service:
    """One service process; restarted with backoff when it dies, like compose would."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path
    echo: bool
    process: ChildProcess | None = None
    restarts: RestartBackoff = field(default_factory=service_backoff)
    started_at: float = 0.0
    stop_grace_s: float = 30.0
    essential: bool = True  # one that keeps exiting takes the node down; else it is left
    settings: BaseServiceSettings | None = None
    settings_for: Callable[[], BaseServiceSettings] | None = None  # fresh ports at each call
    repicked: bool = False  # its settings moved since its last start

    @property
    def port_taken(self) -> bool:
        return self.process is not None and self.process.returncode == PORT_TAKEN_EXIT

    def repick(self) -> bool:
        """After one of its ports was taken: settings on fresh ports; False when they cannot
        move (the user's own, as a gateway's --port)."""
        fresh = self.settings_for() if self.settings_for is not None else None
        if fresh is None or fresh == self.settings:
            return False
        self.settings, self.env, self.ready_url = fresh, service_env(fresh), fresh.probe_url
        self.repicked = True
        return True

    async def start(self) -> ChildProcess:
        if self.port_taken and not self.repicked:  # a restart
            self.repick()
        self.repicked = False
        self.process = ChildProcess(
            self.name, self.argv, env=self.env, log_path=self.log_path, echo=self.echo
        )
        self.started_at = time.monotonic()
        await self.process.start()
        return self.process

    def exit_message(self, code: int | None, delay: float) -> str:
        return f"warning: {self.name} exited with {code}; restarting in {delay:.1f}s"


@dataclass
class StoreService:
    """The mesh's private etcd, supervised like the services: restarted on its own ports and
    data directory, so its keys and every node's token stay valid."""

    server: EtcdServer
    name: str = "etcd"
    restarts: RestartBackoff = field(default_factory=service_backoff)
    started_at: float = 0.0
    stop_grace_s: float = 5.0
    busy: bool = False  # restarting on purpose (expose): not a crash

    @property
    def process(self) -> ChildProcess:
        return self.server.process

    async def start(self) -> ChildProcess:
        self.started_at = time.monotonic()
        await self.server.start()
        return self.server.process

    def exit_message(self, code: int | None, delay: float) -> str:
        return (
            f"warning: the mesh's store (etcd) exited with {code}; requests go on with what "
            f"every gateway already knows; restarting it in {delay:.1f}s with the same data"
        )


class Stack:
    """The child processes of one `serve`, stopped newest first."""

    def __init__(self, opts: ServeOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.services: list[Service | StoreService] = []  # in start order
        self.store: StoreService | None = None
        self.closers: list[Callable[[], Awaitable[None]]] = []  # run before the children stop
        base = opts.state_dir or os.path.join(tempfile.gettempdir(), f"mesh-llm-{os.getpid()}")
        self.state_dir = Path(base)
        self.temporary = not opts.state_dir  # this run's alone: emptied at exit but for logs
        self.log_dir = self.state_dir / "logs"
        self.llama_cache = self.state_dir / "llama-cache"  # the workers' and their file copies

    async def start_store(self, etcd: EtcdServer) -> None:
        self.console.say("starting the mesh's etcd on this machine (pass --etcd to use your own)")
        self.store = StoreService(etcd)
        self.services.append(self.store)
        try:
            await etcd.start()
        except Unavailable as exc:
            raise ServeError(exc.message) from exc

    async def expose_store(self) -> None:
        """The first node from elsewhere joined: etcd listens beyond loopback from now on
        (restarted on the same data; the supervisor leaves it alone meanwhile)."""
        if self.store is None or self.store.server.exposed:
            return
        self.store.busy = True
        try:
            await self.store.server.expose()
        finally:
            self.store.busy = False
        host = self.store.server.host
        self.console.say(
            f"a node joined from elsewhere: the mesh's etcd now listens on {host}",
            event="store_exposed",
        )

    async def start_service(
        self, kind: str, settings_for: Callable[[], SettingsT], name: str = ""
    ) -> SettingsT:
        """Starts `meshllm.<kind>` as `name` (default: the kind; a node runs several workers)
        and waits until it is ready; the settings it runs with. `settings_for` is asked again
        for fresh ports whenever the service finds one of its ports taken."""
        name = name or kind
        settings = settings_for()
        service = Service(
            name=name,
            argv=[sys.executable, "-m", f"meshllm.{kind}"],
            env=service_env(settings),
            ready_url=settings.probe_url,
            log_path=self.log_dir / f"{name}.log",
            echo=self.opts.verbose,
            settings=settings,
            settings_for=settings_for,
        )
        self.services.append(service)
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return await self._started(service, type(settings))
            except ServeError:
                if not (service.port_taken and service.repick()):
                    raise
            self.console.say(
                f"{name} found a port it was given taken; starting it on others",
                event="port_taken",
                service=name,
            )
        return await self._started(service, type(settings))

    async def _started(self, service: Service, settings_type: type[SettingsT]) -> SettingsT:
        await self.wait_ready(await service.start(), service.ready_url)
        assert isinstance(service.settings, settings_type)
        return service.settings

    async def start_extra(self, service: Service) -> None:
        """A child that is not one of the mesh's services (a plugin): started, not waited on."""
        self.services.append(service)
        await service.start()

    async def wait_ready(self, child: ChildProcess, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not child.running:
                    raise ServeError(
                        f"{child.name} exited with {child.returncode}: "
                        f"{child.last_output()} (log: {child.log_path})"
                    )
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as reply:
                        if reply.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise ServeError(
            f"{child.name} was not ready after {timeout_s:.0f}s (log: {child.log_path})"
        )

    async def stop(self) -> None:
        for close in self.closers:  # the authority's door and store connection, before etcd
            await close()
        for service in reversed(self.services):
            if service.process is not None:
                await service.process.stop(grace_s=service.stop_grace_s)
        if self.temporary:
            self.clear_state()

    def clear_state(self) -> None:
        """Everything a run in a temporary folder made but its logs: etcd's data, the mesh's
        keys, copies of models would otherwise pile up run after run."""
        if not self.state_dir.is_dir():
            return
        for entry in self.state_dir.iterdir():
            if entry == self.log_dir:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


async def watch_children(stack: Stack, stop: asyncio.Event) -> int:
    """Until asked to stop. A service that dies is restarted after a growing delay, each in
    its own task (a store that is slow to come back holds up no other restart); one that
    keeps dying takes the stack down with a clear message."""
    restarting: dict[str, asyncio.Task[None]] = {}
    left: set[str] = set()  # non-essential children that kept exiting
    try:
        while not stop.is_set():
            for service in stack.services:
                child = service.process
                busy = service.name in restarting and not restarting[service.name].done()
                busy = busy or getattr(service, "busy", False) or service.name in left
                if child is None or child.running or busy:
                    continue
                delay = record_crash(service, stack.console)
                if delay is None and getattr(service, "essential", True):
                    return 1
                if delay is None:
                    left.add(service.name)
                    continue
                restarting[service.name] = asyncio.create_task(
                    restart(service, delay, stack.console, stop)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)
        return 0
    finally:
        for task in restarting.values():
            task.cancel()
        await asyncio.gather(*restarting.values(), return_exceptions=True)


def record_crash(service: Service | StoreService, console: Console) -> float | None:
    """Says that the service exited; the delay before restarting it, or None when it has
    crashed too often to go on."""
    child = service.process
    assert child is not None
    now = time.monotonic()
    delay = service.restarts.exited(now, now - service.started_at)
    if delay is None:
        essential = getattr(service, "essential", True)
        console.say(
            f"{'error' if essential else 'warning'}: {service.name} keeps exiting (code "
            f"{child.returncode}): {child.last_output()} (log: {child.log_path})"
            + ("" if essential else "; left stopped, the node goes on"),
            event="error" if essential else "given_up",
            service=service.name,
        )
        return None
    message = service.exit_message(child.returncode, delay)
    console.say(
        message, event="restart", message=message, service=service.name, code=child.returncode
    )
    return delay


async def restart(
    service: Service | StoreService, delay: float, console: Console, stop: asyncio.Event
) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
    if stop.is_set():
        return
    try:
        await service.start()
    except (Unavailable, OSError) as exc:  # counted as another crash on the next round
        message = exc.message if isinstance(exc, Unavailable) else str(exc)
        console.say(
            f"warning: {service.name} did not start again: {message}",
            event="warning",
            message=message,
        )
        return
    console.say(f"{service.name} is running again", event="restarted", service=service.name)
