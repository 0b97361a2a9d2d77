"""The supervisor with a real llama-server on a generated model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from meshllm.core.errors import Unavailable
from meshllm.core.process import ChildProcess
from meshllm.worker.launchers import LLAMA_SERVER, RPC_SERVER
from meshllm.worker.llama_server import InstanceSpec
from meshllm.worker.settings import SupervisorSettings
from meshllm.worker.supervisor import InstanceState, ManagedInstance, Supervisor

pytestmark = pytest.mark.integration


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_supervisor(
    binary: str,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    states: list[tuple[str, InstanceState]],
    restart_backoff_s: float = 0.2,
) -> Supervisor:
    settings = SupervisorSettings(
        log_dir=str(tmp_path),
        restart_backoff_s=restart_backoff_s,
        health_interval_s=0.2,
        stop_grace_s=3,
        load_timeout_s=30,
        port_range="32000-32099",
    )

    async def record(instance: ManagedInstance) -> None:
        states.append((instance.spec.instance_id, instance.state))

    return Supervisor(settings, {LLAMA_SERVER: binary}, http, on_change=record)


async def kill_and_await_restart(instance: ManagedInstance, timeout_s: float = 15) -> int:
    """SIGKILL the instance's process and wait (bounded) until it is ready again after one
    restart; the killed pid."""
    killed = instance.process.pid  # type: ignore[union-attr]
    os.kill(killed, signal.SIGKILL)
    for _ in range(int(timeout_s / 0.05)):
        if instance.restart_count == 1 and instance.state == InstanceState.READY:
            break
        await asyncio.sleep(0.05)
    return killed


def spec(model: Path, instance_id: str = "i1") -> InstanceSpec:
    return InstanceSpec(
        instance_id=instance_id, model="tiny", model_path=str(model), context=512, parallel=2
    )


async def test_start_ready_stop(
    llama_server_bin: str, tiny_model: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    states: list[tuple[str, InstanceState]] = []
    supervisor = make_supervisor(llama_server_bin, http, tmp_path, states)
    instance = supervisor.start(spec(tiny_model))
    assert await instance.wait_settled(30) == InstanceState.READY
    async with http.post(
        f"http://127.0.0.1:{instance.port}/completion", json={"prompt": "hi", "n_predict": 4}
    ) as reply:
        assert reply.status == 200 and len((await reply.json())["content"]) > 0
    pid = instance.process.pid  # type: ignore[union-attr]
    await supervisor.stop()
    await supervisor.stop()  # idempotent
    assert not pid_alive(pid)
    assert [s for _, s in states] == [
        InstanceState.STARTING,
        InstanceState.LOADING,
        InstanceState.READY,
        InstanceState.STOPPING,
        InstanceState.STOPPED,
    ]
    assert (tmp_path / "i1.log").read_text().count("listening on") >= 1


async def test_crash_is_restarted_with_backoff(
    llama_server_bin: str, tiny_model: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    states: list[tuple[str, InstanceState]] = []
    supervisor = make_supervisor(llama_server_bin, http, tmp_path, states)
    instance = supervisor.start(spec(tiny_model))
    try:
        assert await instance.wait_settled(30) == InstanceState.READY
        first_pid = await kill_and_await_restart(instance)
        assert instance.state == InstanceState.READY and instance.restart_count == 1
        assert instance.process.pid != first_pid  # type: ignore[union-attr]
        assert instance.last_exit_code == -signal.SIGKILL
        assert InstanceState.FAILED in [s for _, s in states]
    finally:
        await supervisor.stop()


async def test_a_port_taken_while_the_instance_was_down_is_left_for_another(
    llama_server_bin: str, tiny_model: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    supervisor = make_supervisor(llama_server_bin, http, tmp_path, [], restart_backoff_s=1.0)
    instance = supervisor.start(spec(tiny_model))
    try:
        assert await instance.wait_settled(30) == InstanceState.READY
        first_port = instance.port
        os.kill(instance.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        with socket.socket() as other:  # another program takes the port before the restart
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for _ in range(200):
                with contextlib.suppress(OSError):
                    other.bind(("127.0.0.1", first_port))
                    break
                await asyncio.sleep(0.005)
            other.listen()
            for _ in range(300):
                if instance.restart_count == 1 and instance.state == InstanceState.READY:
                    break
                await asyncio.sleep(0.05)
            assert instance.state == InstanceState.READY and instance.port != first_port
            async with http.post(
                f"http://127.0.0.1:{instance.port}/completion",
                json={"prompt": "hi", "n_predict": 2},
            ) as reply:
                assert reply.status == 200
    finally:
        await supervisor.stop()


async def test_binary_that_exits_fails_with_its_output(
    tiny_model: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    states: list[tuple[str, InstanceState]] = []
    script = tmp_path / "broken-server"
    script.write_text("#!/bin/sh\necho 'error: cannot load model' >&2\nexit 3\n")
    script.chmod(0o755)
    supervisor = make_supervisor(str(script), http, tmp_path, states)
    instance = supervisor.start(spec(tiny_model))
    try:
        assert await instance.wait_settled(10) == InstanceState.FAILED
        assert "exited with 3" in instance.message and "cannot load model" in instance.message
    finally:
        await supervisor.stop()
    assert states[-1][1] == InstanceState.STOPPED


async def test_two_instances_get_their_own_ports(
    llama_server_bin: str, tiny_model: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    supervisor = make_supervisor(llama_server_bin, http, tmp_path, [])
    a, b = supervisor.start(spec(tiny_model, "a")), supervisor.start(spec(tiny_model, "b"))
    try:
        assert a.port != b.port
        assert {await a.wait_settled(30), await b.wait_settled(30)} == {InstanceState.READY}
        assert supervisor.start(spec(tiny_model, "a")) is a
        assert await supervisor.remove("a") and not await supervisor.remove("a")
        assert list(supervisor.instances) == ["b"]
    finally:
        await supervisor.stop()


async def test_sigterm_ignored_means_sigkill_after_grace(tmp_path: Path) -> None:
    child = ChildProcess(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('up', flush=True)\ntime.sleep(60)",
        ],
    )
    await child.start()
    for _ in range(100):
        if child.tail:
            break
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code = await child.stop(grace_s=0.5)
    assert code == -signal.SIGKILL
    assert 0.5 <= loop.time() - started < 5
    assert await child.stop() == code  # idempotent


async def test_an_rpc_server_is_supervised_beside_llama_server_and_stops_after_it(
    llama_server_bin: str, tiny_model: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The peer's process kind: ready when its port accepts, restarted when it dies, and
    stopped only after the llama-servers (a host must go before its peers)."""
    rpc_bin = str(Path(llama_server_bin).with_name("ggml-rpc-server"))
    states: list[tuple[str, InstanceState]] = []
    supervisor = make_supervisor(llama_server_bin, http, tmp_path, states)
    supervisor.binaries[RPC_SERVER] = rpc_bin
    peer = supervisor.start(
        InstanceSpec(instance_id="peer", model="tiny", model_path="", context=0, kind=RPC_SERVER)
    )
    host = supervisor.start(spec(tiny_model, "host"))
    assert await peer.wait_settled(30) == InstanceState.READY
    assert await host.wait_settled(30) == InstanceState.READY
    assert "--cache" in peer.process.argv and peer.process.ignore_sigpipe  # type: ignore[union-attr]
    first = await kill_and_await_restart(peer)
    assert peer.state == InstanceState.READY and peer.process.pid != first  # type: ignore[union-attr]
    states.clear()
    await supervisor.stop()
    stopped = [name for name, state in states if state == InstanceState.STOPPED]
    assert stopped == ["host", "peer"]


async def test_a_kind_the_worker_cannot_run_is_refused_at_once(
    llama_server_bin: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    supervisor = make_supervisor(llama_server_bin, http, tmp_path, [])
    with pytest.raises(Unavailable, match="no ggml-rpc-server"):
        supervisor.start(
            InstanceSpec(instance_id="p", model="m", model_path="", context=0, kind=RPC_SERVER)
        )
    assert supervisor.instances == {}
