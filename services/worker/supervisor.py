"""Keeps a worker's processes alive — llama-servers and rpc-servers, each run by its kind's
launcher (launchers.py): start, wait until ready, watch liveness, restart with exponential
backoff after a crash, stop cleanly (llama-servers before rpc-servers).

    starting → loading → ready → (failed → starting …) | (stopping → stopped)

Every state change is reported through `on_change`, which the worker agent uses to publish or
withdraw the instance's endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path

import aiohttp

from meshllm.core.errors import CapacityExhausted, Unavailable
from meshllm.core.ports import bindable
from meshllm.core.process import ChildProcess, RestartBackoff

from .launchers import LAUNCHERS, Launcher
from .llama_server import InstanceSpec
from .settings import SupervisorSettings

logger = logging.getLogger(__name__)


class InstanceState(StrEnum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ManagedInstance:
    def __init__(self, spec: InstanceSpec, port: int, supervisor: Supervisor) -> None:
        self.spec = spec
        self.port = port
        self.state = InstanceState.STARTING
        self.restart_count = 0
        self.last_exit_code = 0
        self.message = ""
        self.process: ChildProcess | None = None
        self._sup = supervisor
        self._changed = asyncio.Condition()
        self._stopping = False
        self.task: asyncio.Task[None] | None = None

    @property
    def settings(self) -> SupervisorSettings:
        return self._sup.settings

    @property
    def launcher(self) -> Launcher:
        return LAUNCHERS[self.spec.kind]

    async def _set(self, state: InstanceState, message: str = "") -> None:
        self.state = state
        self.message = message
        logger.info(
            "instance %s (%s) %s%s",
            self.spec.instance_id,
            self.spec.model,
            state,
            f": {message}" if message else "",
        )
        async with self._changed:
            self._changed.notify_all()
        await self._sup.on_change(self)

    async def wait_settled(self, timeout_s: float) -> InstanceState:
        """Wait until ready, failed for good, or stopped."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(
                lambda: (
                    self.state in (InstanceState.READY, InstanceState.FAILED, InstanceState.STOPPED)
                )
            )
        return self.state

    async def run(self) -> None:
        restarts = RestartBackoff(
            self.settings.restart_backoff_s,
            self.settings.restart_backoff_max_s,
            self.settings.stable_after_s,
        )
        while not self._stopping:
            ready_since = await self._run_once()
            if self._stopping:
                break
            ready_for = time.monotonic() - ready_since if ready_since else 0.0
            backoff = restarts.exited(time.monotonic(), ready_for)
            assert backoff is not None  # an instance is never given up on: its worker decides
            self.restart_count += 1
            logger.warning(
                "restarting %s in %.1fs (restart %d)",
                self.spec.instance_id,
                backoff,
                self.restart_count,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_stop(), timeout=backoff)

    async def _wait_stop(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._stopping)

    async def _run_once(self) -> float | None:
        """One process lifetime. Returns when it has failed; the monotonic time it became
        ready, or None if it never did."""
        launcher = self.launcher
        if not bindable("127.0.0.1", self.port):  # taken while this instance was down
            try:
                self.port = self._sup.free_port()
            except CapacityExhausted as exc:
                await self._set(InstanceState.FAILED, exc.message)
                return None
        argv = launcher.argv(self._sup.binary_for(launcher), self.spec, self.port)
        log_path = Path(self.settings.log_dir) / f"{self.spec.instance_id}.log"
        self.process = ChildProcess(
            self.spec.instance_id,
            argv,
            env=self._sup.env_for(self.spec),
            log_path=log_path,
            ignore_sigpipe=launcher.ignore_sigpipe,
            death_signal=launcher.death_signal,
        )
        await self._set(InstanceState.STARTING)
        try:
            await self.process.start()
        except OSError as exc:
            await self._set(InstanceState.FAILED, f"cannot start {argv[0]}: {exc}")
            return None
        await self._set(InstanceState.LOADING)
        if not await self._wait_loaded():
            await self._fail()
            return None
        ready_since = time.monotonic()
        await self._set(InstanceState.READY)
        await self._watch_liveness()
        await self._fail()
        return ready_since

    async def _wait_loaded(self) -> bool:
        deadline = time.monotonic() + self.settings.load_timeout_s
        while time.monotonic() < deadline and not self._stopping:
            assert self.process is not None
            if not self.process.running:
                return False
            status = await self.launcher.probe(
                self._sup.http, self.port, self.settings.health_timeout_s
            )
            if status == 200:
                return True
            await asyncio.sleep(0.05 if status is None else 0.1)
        if not self._stopping:
            self.message = f"not ready after {self.settings.load_timeout_s:.0f}s"
        return False

    async def _watch_liveness(self) -> None:
        misses = 0
        assert self.process is not None
        while not self._stopping and self.process.running:
            wait = asyncio.create_task(self.process.wait())
            done, _ = await asyncio.wait({wait}, timeout=self.settings.health_interval_s)
            if done or self._stopping:
                break
            wait.cancel()
            status = 200
            if self.launcher.probe_when_ready:
                status = await self.launcher.probe(
                    self._sup.http, self.port, self.settings.health_timeout_s
                )
            if self.process.frozen:
                status = None
            misses = 0 if status == 200 else misses + 1
            if misses >= self.settings.max_health_misses:
                frozen = " (the process is stopped)" if self.process.frozen else ""
                self.message = f"its health probe failed {misses} times in a row{frozen}"
                return

    async def _fail(self) -> None:
        if self._stopping or self.process is None:
            return
        code = await self.process.stop(self.settings.stop_grace_s)
        self.last_exit_code = code if code is not None else 0
        detail = self.message or f"exited with {code}"
        tail = self.process.last_output()
        await self._set(InstanceState.FAILED, f"{detail}{' — ' + tail if tail else ''}")

    async def stop(self) -> None:
        if self._stopping:
            if self.task is not None:
                await asyncio.shield(self.task)
            return
        async with self._changed:
            self._stopping = True
            self._changed.notify_all()
        await self._set(InstanceState.STOPPING)
        if self.process is not None:
            code = await self.process.stop(self.settings.stop_grace_s)
            self.last_exit_code = code if code is not None else self.last_exit_code
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self._set(InstanceState.STOPPED)


class Supervisor:
    """All the processes of one worker."""

    def __init__(
        self,
        settings: SupervisorSettings,
        binaries: Mapping[str, str],
        http: aiohttp.ClientSession,
        on_change: Callable[[ManagedInstance], Awaitable[None]] | None = None,
        base_env: dict[str, str] | None = None,
    ) -> None:
        """`binaries`: launcher kind → the executable that runs it."""
        self.settings = settings
        self.binaries = dict(binaries)
        self.http = http
        self._on_change = on_change
        self._base_env = base_env
        self.instances: dict[str, ManagedInstance] = {}
        self._stopped = asyncio.Event()

    def env_for(self, spec: InstanceSpec) -> dict[str, str] | None:
        return self._base_env

    def binary_for(self, launcher: Launcher) -> str:
        binary = self.binaries.get(launcher.kind)
        if binary is None:
            raise Unavailable(f"this worker has no {launcher.binary_name} to run")
        return binary

    async def on_change(self, instance: ManagedInstance) -> None:
        if self._on_change is not None:
            await self._on_change(instance)

    def start(self, spec: InstanceSpec) -> ManagedInstance:
        """Start an instance (or return the running one with that id)."""
        if self._stopped.is_set():
            raise Unavailable("worker is shutting down")
        existing = self.instances.get(spec.instance_id)
        if existing is not None:
            return existing
        self.binary_for(LAUNCHERS[spec.kind])  # a kind this worker cannot run fails here
        instance = ManagedInstance(spec, self.free_port(), self)
        self.instances[spec.instance_id] = instance
        instance.task = asyncio.create_task(instance.run(), name=f"instance-{spec.instance_id}")
        return instance

    async def remove(self, instance_id: str) -> bool:
        instance = self.instances.get(instance_id)
        if instance is None:
            return False
        await instance.stop()
        self.instances.pop(instance_id, None)
        return True

    def free_port(self) -> int:
        taken = {i.port for i in self.instances.values()}
        for port in self.settings.ports:
            if port not in taken and bindable("127.0.0.1", port):
                return port
        raise CapacityExhausted(f"no free port in {self.settings.port_range} for llama-server")

    async def run(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Every process, by rank: llama-servers (a split's host) before rpc-servers."""
        self._stopped.set()
        for rank in sorted({i.launcher.stop_rank for i in self.instances.values()}):
            ranked = [k for k, i in self.instances.items() if i.launcher.stop_rank == rank]
            await asyncio.gather(*(self.remove(k) for k in ranked))
