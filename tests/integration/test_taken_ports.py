"""A service given a port that something else holds exits with PORT_TAKEN_EXIT, and `serve`
starts it again on fresh ports instead of failing the node."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshllm.cli.etcd import EtcdServer
from meshllm.cli.serve_options import ServeError, ServeOptions
from meshllm.cli.stack import PORT_ATTEMPTS, Stack
from meshllm.cli.terminal import Console
from meshllm.core.ports import PORT_TAKEN_EXIT, free_port
from meshllm.scheduler.settings import SchedulerSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        yield sock.getsockname()[1]


def scheduler_settings(etcd: EtcdServer, mesh_id: str, **ports: int) -> SchedulerSettings:
    return SchedulerSettings(
        etcd_endpoints=etcd.endpoint,
        mesh_id=mesh_id,
        **{"grpc_port": free_port(), "http_port": free_port(), **ports},
    )


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("which", ["grpc_port", "http_port"])
async def test_a_service_whose_port_is_taken_starts_again_on_fresh_ports(
    etcd: EtcdServer,
    mesh_id: str,
    tmp_path: Path,
    held_port: int,
    which: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    given = iter([{which: held_port}])
    stack = Stack(ServeOptions(state_dir=str(tmp_path)), Console(as_json=True))
    try:
        settings = await stack.start_service(
            "scheduler", lambda: scheduler_settings(etcd, mesh_id, **next(given, {}))
        )
        [service] = stack.services
        assert service.process is not None and service.process.running
        assert getattr(settings, which) != held_port
        assert service.ready_url == settings.probe_url
    finally:
        await stack.stop()
    said = events(capsys.readouterr().out)
    assert [e["service"] for e in said if e.get("event") == "port_taken"] == ["scheduler"]


async def test_a_port_taken_every_time_fails_with_one_clear_line(
    etcd: EtcdServer, mesh_id: str, tmp_path: Path, held_port: int
) -> None:
    stack = Stack(ServeOptions(state_dir=str(tmp_path)), Console(as_json=False))
    try:
        with pytest.raises(ServeError) as failed:
            await stack.start_service(
                "scheduler", lambda: scheduler_settings(etcd, mesh_id, grpc_port=held_port)
            )
        [service] = stack.services
        assert service.process is not None and service.process.returncode == PORT_TAKEN_EXIT
        assert f"127.0.0.1:{held_port}: the port is taken" in str(failed.value)
        assert "Traceback" not in str(failed.value)
        assert len(service.log_path.read_text().split("cannot run:")) == PORT_ATTEMPTS + 1
    finally:
        await stack.stop()


async def test_ports_that_cannot_move_are_not_tried_again(
    etcd: EtcdServer,
    mesh_id: str,
    tmp_path: Path,
    held_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A gateway's --port is the user's: when it is taken there is nothing to move."""
    fixed = scheduler_settings(etcd, mesh_id, http_port=held_port)
    stack = Stack(ServeOptions(state_dir=str(tmp_path)), Console(as_json=True))
    try:
        with pytest.raises(ServeError) as failed:
            await stack.start_service("scheduler", lambda: fixed)
        [service] = stack.services
        assert service.port_taken and f"127.0.0.1:{held_port}" in str(failed.value)
        assert len(service.log_path.read_text().split("cannot run:")) == 2  # tried once
    finally:
        await stack.stop()
    assert not [e for e in events(capsys.readouterr().out) if e.get("event") == "port_taken"]
