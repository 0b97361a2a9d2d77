"""One launcher per kind of process a worker supervises: how to start it (argv, environment,
signals), how to tell it is ready and alive, whether it answers requests itself, and when it
stops relative to the others.

- `llama-server`: serves a model (solo, or a split's host); ready and alive while `/health`
  answers 200; publishes an inference endpoint; stops first (a host before its peers: a
  llama-server whose peer vanishes under it aborts).
- `rpc-server` (`ggml-rpc-server`): a split's peer, holding layers for one host; listens on
  loopback with its tensor cache on; ready once its port accepts, then alive while its
  process runs unfrozen; started with
  SIGPIPE ignored (a host dying mid-write would otherwise kill it); stops after the
  llama-servers; never an endpoint of its own.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from . import llama_server
from .llama_server import InstanceSpec

LLAMA_SERVER = "llama-server"
RPC_SERVER = "rpc-server"


class Launcher(Protocol):
    kind: str
    binary_name: str  # what binaries.find_binary looks for
    serves_requests: bool  # publishes an inference endpoint when ready
    stop_rank: int  # lower stops first
    ignore_sigpipe: bool
    death_signal: int
    probe_when_ready: bool  # else, once ready, alive while its process runs (and is not frozen)

    def argv(self, binary: str, spec: InstanceSpec, port: int) -> list[str]: ...

    async def probe(self, http: aiohttp.ClientSession, port: int, timeout_s: float) -> int | None:
        """200 when ready (and alive), another status while loading, None when silent."""
        ...


@dataclass(frozen=True)
class LlamaServerLauncher:
    kind: str = LLAMA_SERVER
    binary_name: str = "llama-server"
    serves_requests: bool = True
    stop_rank: int = 0
    ignore_sigpipe: bool = False
    death_signal: int = signal.SIGKILL  # it holds no state: nothing to finish for a dead worker
    probe_when_ready: bool = True

    def argv(self, binary: str, spec: InstanceSpec, port: int) -> list[str]:
        return llama_server.build_argv(binary, spec, port)

    async def probe(self, http: aiohttp.ClientSession, port: int, timeout_s: float) -> int | None:
        return await llama_server.health(http, port, timeout_s)


@dataclass(frozen=True)
class RpcServerLauncher:
    kind: str = RPC_SERVER
    binary_name: str = "ggml-rpc-server"
    serves_requests: bool = False
    stop_rank: int = 1
    ignore_sigpipe: bool = True
    death_signal: int = signal.SIGKILL
    # it listens with a backlog of one and serves one host at a time: probes queued behind
    # a connected host would pile up, fail, and get a healthy peer restarted
    probe_when_ready: bool = False

    def argv(self, binary: str, spec: InstanceSpec, port: int) -> list[str]:
        argv = [binary, "--host", "127.0.0.1", "--port", str(port), "--cache"]
        if spec.threads:
            argv += ["--threads", str(spec.threads)]
        return argv

    async def probe(self, http: aiohttp.ClientSession, port: int, timeout_s: float) -> int | None:
        return 200 if await port_accepts(port, timeout_s) else None


async def port_accepts(port: int, timeout_s: float) -> bool:
    """A TCP connect to the loopback port succeeds (and is closed at once: an rpc-server
    takes one host at a time, and a probe must not hold it)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


LAUNCHERS: dict[str, Launcher] = {
    LLAMA_SERVER: LlamaServerLauncher(),
    RPC_SERVER: RpcServerLauncher(),
}
