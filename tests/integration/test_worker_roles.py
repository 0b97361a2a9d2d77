"""The worker service as a process, given assignments by role through etcd: a split's peer
runs an rpc-server (ready when its port accepts) and publishes no inference endpoint; the
peer goes when its assignment does."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshllm.cli.etcd import EtcdServer
from meshllm.core import keys
from meshllm.core.ports import free_port
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(etcd: EtcdServer, mesh_id: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update(
        MESH_MESH_ID=mesh_id,
        MESH_NODE="n1",
        MESH_ETCD_ENDPOINTS=etcd.endpoint,
        MESH_GRPC_PORT=str(free_port()),
        MESH_HTTP_PORT=str(free_port()),
        MESH_RELAY_PORT=str(free_port()),
        MESH_DEVICE="cpu",
        MESH_SUPERVISOR__LOG_DIR=str(tmp_path),
        MESH_SUPERVISOR__THREADS="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "meshllm.worker"], env=env, stdout=subprocess.DEVNULL
    )
    yield process
    process.terminate()
    process.wait(30)


async def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_a_peer_assignment_runs_an_rpc_server_and_no_endpoint(
    worker: subprocess.Popen[bytes], store: EtcdStore, mesh_id: str
) -> None:
    async def record() -> pb.WorkerRecord | None:
        found, _ = await store.get_prefix(keys.workers(mesh_id, "n1"), pb.WorkerRecord)
        return next(iter(found.values()), None)

    registered = await wait_for(record)
    peer = pb.Assignment(
        id="a-peer",
        group_id="g1",
        model="big",
        node="n1",
        worker_id=registered.worker_id,
        role=pb.ASSIGNMENT_ROLE_PEER,
        share=0.5,
    )
    key = keys.assignment(mesh_id, "n1", registered.worker_id, peer.id)
    await store.put(key, peer, lease=registered.lease_id)

    async def ready_peer() -> pb.Instance | None:
        current = await record()
        ready = (
            [i for i in current.instances if i.state == pb.INSTANCE_STATE_READY] if current else []
        )
        return ready[0] if ready else None

    instance = await wait_for(ready_peer)
    assert instance.assignment_id == "a-peer"
    with socket.create_connection(("127.0.0.1", instance.port), timeout=2):
        pass  # an rpc-server on loopback
    endpoints, _ = await store.get_prefix(keys.endpoints(mesh_id), pb.Endpoint)
    assert endpoints == {}
    await store.delete(key)

    async def gone() -> bool:
        current = await record()
        return current is not None and not current.instances

    await wait_for(gone)
