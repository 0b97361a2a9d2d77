"""The one way tests and benchmarks run `mesh-llm serve` (or `client`) as a user does: the real
command, its `--json` events read as they come, the API and console it answers on, and the
processes below it (to find a llama-server's port, or to kill a service on purpose). The
end-to-end tests, the fault suite and the benchmarks all start nodes through `ServeProcess`
and `local_serve`; a simulated host wraps the same argv in `ip netns exec`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from helpers import cannot_run_here, descendants
from netns import Host, Lab, netns_supported

from meshllm.core.ports import free_port


def mesh_llm(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshllm.cli", *args]


# What identifies each process kind below a serve, in its command line.
PROCESS_MARKERS = {
    "gateway": "meshllm.gateway",
    "worker": "meshllm.worker",
    "registry": "meshllm.registry",
    "scheduler": "meshllm.scheduler",
    "llama-server": "llama-server",
    "rpc-server": "ggml-rpc-server --host",
    "etcd": "etcd --name",
}


@dataclass
class ServeProcess:
    name: str
    argv: list[str]  # the whole command (wrapped in `ip netns exec …` for a simulated host)
    api: str  # http://HOST:PORT/v1
    console: str = ""  # http://HOST:PORT, or "" when it runs none
    state: Path | None = None
    api_key: str = ""
    host: Host | None = None  # the simulated host it runs on, if any
    process: subprocess.Popen[str] | None = None
    events: list[dict] = field(default_factory=list)

    def start(self) -> ServeProcess:
        self.events = []
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))
            elif line.strip():
                self.events.append({"output": line.strip()})

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_event(self, kind: str, count: int = 1, timeout: float = 180) -> dict:
        """The `count`-th event of that kind, waiting for it as long as serve runs."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.get("event") == kind]
            if len(found) >= count:
                return found[count - 1]
            assert self.running, f"{self.name} exited: {self.events}"
            assert time.monotonic() < deadline, f"{self.name}: no {kind}: {self.events}"
            time.sleep(0.1)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def served(self) -> dict[str, list[str]]:
        """Every model the API lists, with the nodes of its replicas."""
        models = httpx.get(f"{self.api}/models", headers=self.headers, timeout=10).json()["data"]
        return {m["id"]: sorted(r["node"] for r in m["meshllm"]["replicas"]) for m in models}

    def status(self) -> dict:
        return httpx.get(f"{self.console}/api/status", headers=self.headers, timeout=10).json()

    def llama_port(self, model: str) -> int:
        """The loopback port of the model's ready llama-server on this node."""
        for node in self.status()["nodes"]:
            for worker in node["workers"]:
                for instance in worker["instances"]:
                    if instance["model"] == model and instance["state"] == "ready":
                        return int(instance["port"])
        raise AssertionError(f"{model} has no ready instance on {self.name}")

    def pids(self, kind: str) -> list[int]:
        """The live processes of one kind below this serve (see PROCESS_MARKERS)."""
        marker = PROCESS_MARKERS[kind]
        return sorted(pid for pid, command in descendants(self.pid).items() if marker in command)

    def pid_of(self, kind: str) -> int:
        found = self.pids(kind)
        assert len(found) == 1, f"{self.name}: {kind} processes {found}"
        return found[0]

    def client(self, timeout: float = 60) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.api, api_key=self.api_key or "unused", max_retries=0, timeout=timeout
        )

    def stop(self, timeout: float = 60, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def local_serve(
    state: Path,
    *models: Path,
    threads: int = 1,
    parallel: int = 0,
    context: int = 0,
    console: bool = True,
    extra: tuple[str, ...] = (),
    command: str = "serve",
    env: dict[str, str] | None = None,
) -> ServeProcess:
    """`mesh-llm serve` on this machine, on free ports, started (not yet ready: wait for
    its `model_ready` events), with `env` added to its environment."""
    port = free_port()
    console_port = free_port() if console else 0
    flags = [arg for model in models for arg in ("--gguf", str(model))]
    if parallel:
        flags += ["--parallel", str(parallel)]
    if context:
        flags += ["--context", str(context)]
    if threads and command == "serve":
        flags += ["--threads", str(threads)]
    argv = mesh_llm(
        command,
        *flags,
        "--port",
        str(port),
        "--console-port",
        str(console_port),
        "--state-dir",
        str(state),
        "--json",
        *extra,
    )
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    return ServeProcess(
        command,
        argv,
        api=f"http://127.0.0.1:{port}/v1",
        console=f"http://127.0.0.1:{console_port}" if console else "",
        state=state,
    ).start()


LAB_API_PORT = 9337
LAB_CONSOLE_PORT = 3131
LAB_API_KEY = "sk-lab-mesh"  # a node's API listens on its host's address: keys are required


def lab_node(
    host: Host, name: str, state: Path, *args: str, env: dict[str, str] | None = None
) -> ServeProcess:
    """A node on a simulated host (not started): `mesh-llm ARGS` on the host's address, its
    API on the host's address with LAB_API_KEY, its state under `state`/`name`, with `env`
    added to its environment."""
    argv = mesh_llm(
        *args,
        "--host",
        host.address,
        "--api-host",
        host.address,
        "--api-key",
        LAB_API_KEY,
        "--node",
        name,
        "--state-dir",
        str(state / name),
        "--json",
        "--console-port",
        str(LAB_CONSOLE_PORT),
    )
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    return ServeProcess(
        name,
        host.command(argv),
        api=f"http://{host.address}:{LAB_API_PORT}/v1",
        console=f"http://{host.address}:{LAB_CONSOLE_PORT}",
        state=state / name,
        api_key=LAB_API_KEY,
        host=host,
    )


def stop_nodes(nodes: dict[str, ServeProcess]) -> None:
    """SIGTERM every node still running, then wait for each (SIGKILL after 30 s)."""
    for node in nodes.values():
        if node.process is not None and node.process.poll() is None:
            node.process.terminate()
    for node in nodes.values():
        if node.process is not None:
            try:
                node.process.wait(30)
            except subprocess.TimeoutExpired:
                node.process.kill()


def wait_for(check, timeout: float = 120.0, every: float = 0.2):  # type: ignore[no-untyped-def]
    """The first truthy result of `check()` (an HTTP or API error counts as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (httpx.HTTPError, openai.APIError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every)


@contextmanager
def lab_mesh(
    tmp_path_factory: pytest.TempPathFactory, name: str, hosts: int, needs: str
) -> Iterator[tuple[Lab, dict[str, ServeProcess], Path]]:
    """Simulated hosts for `needs` (a suite's purpose, for the message when namespaces are
    missing), a state directory, and the nodes the caller starts there: every node is stopped
    and every namespace removed afterwards, whatever happened."""
    reason = netns_supported()
    if reason is not None:
        cannot_run_here(f"{needs} needs network namespaces: {reason}")
    state = tmp_path_factory.mktemp(name)
    lab = Lab.create(hosts)
    nodes: dict[str, ServeProcess] = {}
    try:
        yield lab, nodes, state
    finally:
        stop_nodes(nodes)
        lab.destroy()
